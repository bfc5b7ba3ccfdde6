#!/usr/bin/env bash
# Start a local kernel, replay the 2005 seed's session against it, stop it.
# Arguments are passed to examples/seed_session.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python examples/seed_session.py "$@"
