#!/usr/bin/env bash
# Lint, check formatting, then run the test suite; arguments go to pytest
# (e.g. `bash scripts/test.sh tests/unit -x`). Exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

# Only directories that exist yet: ruff treats a missing path as an error.
paths=()
for d in ipython_parallel_kernel tests benchmarks examples; do
    [ -d "$d" ] && paths+=("$d")
done

# Run every step even after a failure, so one run reports all problems.
lint=0
if [ ${#paths[@]} -gt 0 ]; then
    .venv/bin/python -m ruff check "${paths[@]}" || lint=1
    .venv/bin/python -m ruff format --check "${paths[@]}" || lint=1
fi

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 0 ] && [ "$lint" -ne 0 ]; then
    echo "test.sh: tests passed but ruff found problems (see above)" >&2
    status=1
fi
exit "$status"
