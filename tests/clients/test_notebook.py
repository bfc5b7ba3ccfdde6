"""The example notebook, executed in a real Jupyter kernel (ipykernel) by nbclient.

The notebook starts two kernels with ``%kernel start``, runs code on them and stops
them. It runs with a private IPYTHONDIR and Jupyter runtime directory, and a private
``python3`` kernelspec that runs this interpreter. Afterwards no process that mentions
those directories may be left; any that is, is killed by pid and the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import skip_or_fail, start_kernel

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "parallel_notebook.ipynb"
GONE_TIMEOUT = 15.0


def _imports():
    try:
        import ipykernel  # noqa: F401
        import nbclient
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError as e:
        skip_or_fail(f"running notebooks needs nbclient, nbformat and ipykernel: {e}")
    return nbclient, nbformat, KernelSpecManager


def _install_kernelspec(jupyter_path: Path) -> None:
    """A ``python3`` kernelspec in ``jupyter_path`` that runs this interpreter."""
    spec = jupyter_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel_json = {"argv": argv, "display_name": "Python 3 (test)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel_json))


def _processes_mentioning(marker: str) -> list[int]:
    """Our processes whose command line or environment contains ``marker``."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            text = (entry / "cmdline").read_bytes()
            if not text:  # a zombie, or a kernel thread
                continue
            text += (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in text:
            found.append(int(entry.name))
    return found


def _reap(marker: str) -> list[tuple[int, str]]:
    """Wait (bounded) for processes mentioning ``marker`` to go; kill the rest by pid."""
    deadline = time.monotonic() + GONE_TIMEOUT
    while (pids := _processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        leftovers.append((pid, command.strip()))
    return leftovers


def _private_jupyter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private IPYTHONDIR, Jupyter path and runtime directory under ``tmp_path/private``."""
    _, _, kernel_spec_manager = _imports()
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finding leftover processes needs /proc")
    private = tmp_path / "private"
    jupyter_path = private / "jupyter"
    _install_kernelspec(jupyter_path)
    # The ipykernel subprocess inherits these, and the kernels it starts in turn.
    (private / "ipython").mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(private / "ipython"))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(private / "runtime"))
    argv = kernel_spec_manager().get_kernel_spec("python3").argv
    assert argv[0] == sys.executable, argv
    return private


def _execute(notebook, private: Path, **options) -> None:
    """Run ``notebook`` in a fresh ipykernel; fail if it leaves processes behind."""
    nbclient, _, _ = _imports()
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(private.parent)}},
        **options,
    )
    try:
        client.execute()
    finally:
        leftovers = _reap(str(private))
    assert not leftovers, f"processes left running after the notebook (killed): {leftovers}"


@pytest.fixture
def executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The example notebook after nbclient ran it in a fresh ipykernel."""
    _, nbformat, _ = _imports()
    private = _private_jupyter(tmp_path, monkeypatch)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    _execute(notebook, private)
    return notebook


def _cell(notebook, source: str):
    cells = [c for c in notebook.cells if c.cell_type == "code" and c.source == source]
    assert len(cells) == 1, f"the notebook has no single cell {source!r}"
    return cells[0]


def _texts(cell) -> list[str]:
    """The text of each output: streams, text/plain of results and display data, errors."""
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            texts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            texts.append("\n".join(output.traceback))
    return texts


def _shown(cell) -> str:
    return "\n".join(_texts(cell))


def _lines(cell) -> list[str]:
    """Every line of text the cell showed (streams may arrive split or merged)."""
    return [line.rstrip() for line in _shown(cell).splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_example_notebook_runs_in_jupyter(executed):
    """Labelled output, results, a kernel's figure as PNG, errors; the kernels stop."""
    assert "started 2 kernels" in _shown(_cell(executed, "%kernel start -n 2"))

    printed = _cell(executed, "%px import os; print('kernel', os.getpid())")
    assert {o.output_type for o in printed.outputs} == {"stream"}
    assert {o.name for o in printed.outputs} == {"stdout"}
    assert sorted(line.split()[0] for line in _lines(printed)) == ["[stdout:0]", "[stdout:1]"]

    results = _lines(_cell(executed, "%%px\na = 5\na * 2"))
    for target in (0, 1):
        assert any(re.fullmatch(rf"Out\[{target}:\d+\]: 10", line) for line in results), results

    figure = _cell(executed, next(c.source for c in executed.cells if "plt.plot" in c.source))
    kinds = [(o.output_type, sorted(o.get("data", {}))) for o in figure.outputs]
    pngs = [o for o in figure.outputs if "image/png" in o.get("data", {})]
    assert pngs, f"no image/png output from the kernels' figures; outputs: {kinds}"

    failed = _cell(executed, "%px 1/0")
    errors = [o for o in failed.outputs if o.output_type == "error"]
    assert len(errors) == 1
    traceback = "\n".join(errors[0].traceback)
    assert "ZeroDivisionError" in traceback
    assert "[0:execute]" in traceback and "[1:execute]" in traceback

    # %pxresult repeats the last outcome (the errors, raised again); %pxresult 2 command
    # 2, `a * 2`.
    again = [o for o in _cell(executed, "%pxresult").outputs if o.output_type == "error"]
    assert len(again) == 1 and "[0:execute]" in "\n".join(again[0].traceback)
    repeated = _lines(_cell(executed, "%pxresult 2"))
    assert sorted(repeated) == ["Out[0:2]: 10", "Out[1:2]: 10"], repeated

    assert "stopped" in _shown(_cell(executed, "%kernel stop"))


@pytest.mark.timeout(300)
def test_activate_without_load_ext_then_px(tmp_path, monkeypatch):
    """In Jupyter, ic.activate() alone makes %px work, a %px of 3 s and the one after it."""
    _, nbformat, _ = _imports()
    # Started before the private directory is made the environment's: what mentions it
    # is reaped after the notebook.
    (tmp_path / "kernels").mkdir()
    kernels = [start_kernel(tmp_path / "kernels") for _ in range(2)]
    try:
        private = _private_jupyter(tmp_path, monkeypatch)
        files = [str(k.connection_file) for k in kernels]
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_code_cell(
                "from ipython_parallel_kernel import InteractiveCluster\n"
                f"ic = InteractiveCluster({files!r}, timeout=60)\n"
                "ic.activate() is ic"
            ),
            nbformat.v4.new_code_cell("%px import time; time.sleep(3); print('slow done')"),
            nbformat.v4.new_code_cell("%px print('next')"),
            nbformat.v4.new_code_cell("ic.disconnect()"),
        ]
        _execute(notebook, private, allow_errors=True)
    finally:
        for kernel in kernels:
            kernel.stop()
    activated, slow, following, _ = notebook.cells
    for cell in notebook.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source!r} failed: {_shown(cell)}"
    assert _texts(activated) == ["True"]
    assert sorted(line for line in _lines(slow) if "slow done" in line) == [
        "[stdout:0] slow done",
        "[stdout:1] slow done",
    ], _shown(slow)
    assert "%px" in _shown(slow) and "Warning" not in _shown(slow)  # a bar, and no advice
    assert sorted(_lines(following)) == ["[stdout:0] next", "[stdout:1] next"], _shown(following)


@pytest.mark.timeout(300)
def test_wait_interactive_and_display_outputs_in_a_notebook(tmp_path, monkeypatch):
    """In Jupyter, ar.wait_interactive() draws its bar and returns with the result done,
    and display_outputs() shows each kernel's output, labelled."""
    from ipython_parallel_kernel.core.clusterfile import write_cluster_file
    from ipython_parallel_kernel.core.connection import read_connection_file

    _, nbformat, _ = _imports()
    (tmp_path / "kernels").mkdir()
    kernels = [start_kernel(tmp_path / "kernels") for _ in range(2)]
    try:
        cluster_file = tmp_path / "ipk-cluster-nb.json"
        infos = [read_connection_file(k.connection_file) for k in kernels]
        write_cluster_file(infos, cluster_file)
        private = _private_jupyter(tmp_path, monkeypatch)
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_code_cell(
                "import time\n"
                "import ipython_parallel_kernel as ipp\n"
                f"rc = ipp.Client({str(cluster_file)!r}, timeout=60)\n"
                "lview = rc.load_balanced_view()"
            ),
            nbformat.v4.new_code_cell(
                "ar = lview.map_async(lambda t: time.sleep(t) or t, [0.1] * 10)\n"
                "ar.wait_interactive(interval=0.05)\n"
                "ar.ready(), len(ar), ar.progress"
            ),
            nbformat.v4.new_code_cell("rc[:].execute(\"print('from', 'here')\").display_outputs()"),
            nbformat.v4.new_code_cell("rc.close()"),
        ]
        _execute(notebook, private, allow_errors=True)
    finally:
        for kernel in kernels:
            kernel.stop()
    for cell in notebook.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source!r} failed: {_shown(cell)}"
    waited, shown = notebook.cells[1], notebook.cells[2]
    assert "(True, 10, 10)" in _texts(waited), _shown(waited)
    assert "tasks" in _shown(waited) and "Warning" not in _shown(waited)
    assert sorted(_lines(shown)) == ["[stdout:0] from here", "[stdout:1] from here"]
