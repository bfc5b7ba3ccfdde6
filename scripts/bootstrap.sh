#!/usr/bin/env bash
# Prepare .venv at the repository root so demo.sh and test.sh can run.
# Safe to run before every command: each step is skipped when already done.
#
#   bash scripts/bootstrap.sh [--extras GROUP[,GROUP]]   (e.g. --extras test; default: none,
#                                                         which is all the demo needs)
#   IPK_APT_PACKAGES="pkg ..."   extra Debian/Ubuntu packages to ensure are installed
#   IPK_APT_WHY="..."            what they are for, said when installing or asking for them
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bootstrap: $*" >&2; exit 1; }

extras=""
while [ $# -gt 0 ]; do
    case "$1" in
        --extras) [ $# -ge 2 ] || die "--extras needs a value"; extras="$extras,$2"; shift 2 ;;
        --extras=*) extras="$extras,${1#*=}"; shift ;;
        *) die "unknown argument: $1 (usage: bootstrap.sh [--extras bench])" ;;
    esac
done

# Debian's own interpreter, so that Debian-packaged modules (python3-wxgtk4.0)
# are importable through --system-site-packages.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || die "python3 not found; install Python 3.11 or newer"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is required; $py is $("$py" -V 2>&1)"

venv_ok() { [ -x .venv/bin/python ] && [ -x .venv/bin/pip ] && .venv/bin/python -c '' 2>/dev/null; }

# Debian splits venv/ensurepip out of the interpreter package: without
# python3-venv, `python3 -m venv` leaves a half-made directory with no pip.
want=${IPK_APT_PACKAGES:-}
if ! venv_ok && ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    want="python3-venv $want"
fi

missing=()
for pkg in $want; do
    command -v dpkg-query >/dev/null || die "not a Debian/Ubuntu system; install by hand: $want"
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done

why=${IPK_APT_WHY:+ for $IPK_APT_WHY}
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        die "missing system packages${why}; this is neither root nor allowed sudo without a password, so run:
    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
    fi
    echo "bootstrap: installing system packages${why} with apt-get${as_root:+ (sudo)}: ${missing[*]}" >&2
    # env: sudo drops the caller's environment. Lock timeout: on a fresh cloud
    # machine unattended-upgrades often holds the dpkg lock for a while.
    apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300)
    "${apt[@]}" update >/dev/null
    "${apt[@]}" install "${missing[@]}" >/dev/null
fi

if ! venv_ok; then
    echo "bootstrap: creating .venv with $py" >&2
    # --clear: a previous attempt without python3-venv leaves a venv with no pip.
    "$py" -m venv --system-site-packages --clear .venv
fi

# Reinstall only when the dependency list changes or an extra is asked for that is not
# installed yet, so repeated runs are quick and need no network. Extras installed
# before are kept: the demo after the tests must not uninstall what the tests need.
stamp=.venv/.ipk-installed
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
read -r had_hash had_extras 2>/dev/null <"$stamp" || true
want_extras=$( (tr ',' '\n' <<<"${had_extras:-},$extras") | sed '/^$/d' | sort -u | paste -sd, -)
if [ "${had_hash:-}" != "$hash" ] || [ "${had_extras:-}" != "$want_extras" ]; then
    spec=.
    [ -n "$want_extras" ] && spec=".[$want_extras]"
    echo "bootstrap: installing the package${want_extras:+ and its [$want_extras] dependencies} into .venv" >&2
    rm -f "$stamp"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e "$spec"
    echo "$hash $want_extras" >"$stamp"
fi
