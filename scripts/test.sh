#!/usr/bin/env bash
# Set up what the suite needs, lint, check formatting and types, then run the tests;
# arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -x`). Exits non-zero if
# any step failed.
#
# On Debian or Ubuntu it installs the system packages the GUI tests need, as root or
# with `sudo -n` (else it prints the apt command to run and stops):
#   python3-wxgtk4.0  wxPython (PyPI has no Linux wheel of it)
#   python3-tk        tkinter
#   xvfb xauth        the virtual screen the GUI tests draw on
#   the rest          the system libraries PySide6's Qt and its X11 (xcb) platform plugin
#                     load, as kernel/gui.py's QT_XCB_PACKAGES lists them
# and the scale-out tests' packages (their daemons are started by the tests' fixtures;
# nothing starts them at install, and gridengine's debconf questions take defaults):
#   openmpi-bin       mpiexec and the Open MPI libraries mpi4py's wheel links (kernels as ranks)
#   libpmix-dev       the libpmix.so Slurm's `srun --mpi=pmix` loads
#   openssh-server    the sshd that the ssh launcher's tests start on 127.0.0.1 and 127.0.0.2
#   slurm-wlm gridengine-master gridengine-exec gridengine-client
#                     the Slurm (with munge) and Grid Engine the batch launcher tests run
# then creates .venv and installs the package with its test dependencies into it.
set -euo pipefail
cd "$(dirname "$0")/.."

gui_packages="python3-wxgtk4.0 python3-tk xvfb xauth"
qt_packages="libegl1 libgl1 libfontconfig1 libdbus-1-3 libx11-6 libx11-xcb1 libxkbcommon0
    libxkbcommon-x11-0 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
    libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1
    libxcb-util1 libxcb-xfixes0 libxcb-xkb1"
scaleout_packages="openmpi-bin libpmix-dev openssh-server slurm-wlm gridengine-master
    gridengine-exec gridengine-client"
IPK_APT_PACKAGES="${IPK_APT_PACKAGES:-} $gui_packages $qt_packages $scaleout_packages" \
    IPK_APT_WHY="the GUI tests (wx, tk, Qt under Xvfb) and the scale-out tests (MPI, sshd, Slurm, SGE)" \
    bash scripts/bootstrap.sh --extras test

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
.venv/bin/python -m mypy || lint=1

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 0 ] && [ "$lint" -ne 0 ]; then
    echo "test.sh: tests passed but ruff or mypy found problems (see above)" >&2
    status=1
fi
exit "$status"
