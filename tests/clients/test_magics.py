"""The IPython extension, driven through IPython's real InteractiveShell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for
from IPython.core.interactiveshell import InteractiveShell

from ipython_parallel_kernel import InteractiveCluster, RemoteKernel


@pytest.fixture
def shell():
    """An InteractiveShell with the extension loaded; unloaded afterwards."""
    ip = InteractiveShell.instance()
    ip.colors = "nocolor"
    ip.run_cell("%load_ext ipython_parallel_kernel")
    try:
        yield ip
    finally:
        ip.run_cell("%unload_ext ipython_parallel_kernel")
        for name in ("rk", "ic", "results", "pending"):
            ip.user_ns.pop(name, None)


@pytest.fixture
def connected(shell, four_kernels):
    """The shell with the four shared kernels active, their namespaces emptied."""
    files = " ".join(str(k.connection_file) for k in four_kernels)
    shell.run_cell(f"%kernel connect {files}")
    InteractiveCluster([str(k.connection_file) for k in four_kernels]).reset()
    return shell


def connected_files(shell: InteractiveShell) -> list[str]:
    """The connection files of the kernels the shell's %px runs on."""
    magics = shell.magics_manager.registry["KernelMagics"]
    return [str(k.info.path) for k in magics.active]


def run(shell: InteractiveShell, cell: str):
    """Run a cell; return IPython's result object."""
    return shell.run_cell(cell)


def run_fresh_session(script: str, ipython_dir: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in a new Python process (a session of its own) with that IPYTHONDIR."""
    env = {**os.environ, "IPYTHONDIR": str(ipython_dir)}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_px_labels_stdout_and_results(connected, capsys):
    """%px output is labelled per kernel: [stdout:N] and Out[N:M]."""
    capsys.readouterr()
    run(connected, "%px a = 5")
    run(connected, "%px print(a * 2)")
    out = capsys.readouterr().out
    # Streamed output comes in the order the kernels print it.
    assert sorted(lines(out)) == [f"[stdout:{i}] 10" for i in range(4)]
    run(connected, "%px a + 1")
    out = lines(capsys.readouterr().out)
    assert len(out) == 4
    assert all(line.startswith(f"Out[{i}:") and line.endswith("]: 6") for i, line in enumerate(out))


def test_px_sends_braces_and_dollars_unexpanded(connected, capsys):
    """%px and %%px send {a} and $a as typed, not filled in with this session's a."""
    connected.user_ns["a"] = "LOCAL"
    capsys.readouterr()
    run(connected, "%px print('{a}', '$a')")
    run(connected, "%%px --no-stream\nprint('{a}', '$a')")
    out = lines(capsys.readouterr().out)
    assert sorted(out) == sorted([f"[stdout:{i}] {{a}} $a" for i in range(4)] * 2), out
    connected.user_ns.pop("a")


def test_px_longer_than_the_progress_delay_then_the_next(connected, capsys):
    """A %px that outlasts progress_after shows a bar and succeeds; so does the next %px."""
    magics = connected.magics_manager.registry["KernelMagics"]
    assert magics.progress_after == 2.0
    capsys.readouterr()
    slow = run(connected, "%px import time; time.sleep(3); print('slow')")
    assert slow.success, slow.error_in_exec
    captured = capsys.readouterr()
    assert sorted(lines(captured.out)) == [f"[stdout:{i}] slow" for i in range(4)]
    assert "%px" in captured.err  # the progress bar's label
    after = run(connected, "%px print('next')")
    assert after.success, after.error_in_exec
    assert sorted(lines(capsys.readouterr().out)) == [f"[stdout:{i}] next" for i in range(4)]


def test_cell_px_options(connected, capsys):
    """%%px takes -t, -o, --no-stream and --group-outputs; stderr is labelled too."""
    capsys.readouterr()
    result = run(
        connected,
        "%%px -t ::2 -o results --no-stream --group-outputs type\n"
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\n7",
    )
    assert result.success
    captured = capsys.readouterr()
    assert lines(captured.out)[:2] == ["[stdout:0] out", "[stdout:2] out"]
    assert lines(captured.err) == ["[stderr:0] err", "[stderr:2] err"]
    assert [r.text for r in connected.user_ns["results"]] == ["7", "7"]


def test_px_noblock_returns_cluster_result(connected):
    """%%px --noblock -o NAME binds the pending ClusterResult."""
    run(connected, "%%px --noblock -o pending\nimport time; time.sleep(0.3); 'late'")
    pending = connected.user_ns["pending"]
    assert [r.text for r in pending.get(30)] == ["'late'"] * 4


def test_px_error_is_raised_with_remote_tracebacks(connected, capsys):
    """A failure on some kernels fails the cell and shows [N:execute] with the traceback."""
    result = run(connected, "%%px -t 1,3\n1/0")
    assert not result.success
    assert type(result.error_in_exec).__name__ == "CompositeError"
    text = capsys.readouterr()
    shown = text.out + text.err
    assert "[1:execute]" in shown and "[3:execute]" in shown
    assert "ZeroDivisionError: division by zero" in shown


def test_pxresult_shows_the_last_result_again(connected, capsys):
    """%pxresult repeats the last %px output; %result is its alias; N picks a command."""
    run(connected, "%px 40 + 2")
    first = capsys.readouterr().out
    run(connected, "%pxresult")
    assert capsys.readouterr().out == first
    run(connected, "%result")
    assert capsys.readouterr().out == first
    number = int(first.split(":")[1].split("]")[0])
    run(connected, f"%pxresult {number}")
    assert capsys.readouterr().out == first


def test_autopx_sends_every_cell(connected, capsys):
    """%autopx runs following cells on the kernels until toggled off."""
    run(connected, "%autopx")
    run(connected, "remote_only = 3\nprint(remote_only)")
    run(connected, "%autopx")
    out = capsys.readouterr().out
    assert "[stdout:0] 3" in out and "[stdout:3] 3" in out
    assert "remote_only" not in connected.user_ns
    run(connected, "local_again = 1")
    assert connected.user_ns["local_again"] == 1


def test_px_runs_ipython_syntax_on_the_kernels(connected, capsys):
    """%px %timeit, a %%px cell of %%timeit and %px !cmd run on each kernel, with the
    kernel's names and labelled output."""
    run(connected, "%px def f(x): return x * 2")
    capsys.readouterr()
    timed = run(connected, "%px %timeit -n 3 -r 1 f(4)")
    assert timed.success, timed.error_in_exec
    out = lines(capsys.readouterr().out)
    assert sorted(line.split("]")[0] for line in out) == [f"[stdout:{i}" for i in range(4)]
    assert all("of 1 run, 3 loops each" in line for line in out)
    cell = run(connected, "%%px -t 0 --no-stream\n%%timeit -n 2 -r 1\nf(5)")
    assert cell.success, cell.error_in_exec
    assert "of 1 run, 2 loops each" in capsys.readouterr().out
    run(connected, "%%px -t 1\n!echo hostname-like")
    assert lines(capsys.readouterr().out) == ["[stdout:1] hostname-like"]


def test_px_unknown_magic_fails_the_cell_with_the_usage_error(connected, capsys):
    """%px of a magic the kernels lack fails the cell with each kernel's UsageError;
    the kernels carry on."""
    capsys.readouterr()
    result = run(connected, "%%px -t 0,2\n%nosuchmagic")
    assert not result.success
    shown = "".join(capsys.readouterr())
    assert shown.count("UsageError: Line magic function `%nosuchmagic` not found.") == 2
    assert run(connected, "%%px -t 0\nprint('alive')").success


def test_autopx_cell_with_a_magic_runs_it_on_the_kernels(connected, capsys):
    """Under %autopx a cell using IPython syntax (which this session's IPython has
    already turned into get_ipython() calls) runs on the kernels."""
    run(connected, "%autopx")
    try:
        run(connected, "remote_value = 7\n%who")
    finally:
        run(connected, "%autopx")
    out = [line.strip() for line in lines(capsys.readouterr().out)]
    assert "[stdout:0] remote_value" in out and "[stdout:3] remote_value" in out
    assert "remote_value" not in connected.user_ns


def test_kernel_list_and_use(connected, four_kernels, capsys):
    """%kernel list prints a table; %kernel use activates a variable's kernels."""
    capsys.readouterr()
    run(connected, "%kernel list")
    table = lines(capsys.readouterr().out)
    assert table[0].split() == ["target", "address", "state", "queue", "gui", "rank"]
    assert [row.split()[2] for row in table[1:]] == ["idle"] * 4
    assert [row.split()[5] for row in table[1:]] == ["-"] * 4  # not MPI ranks
    connected.user_ns["rk"] = RemoteKernel(str(four_kernels[2].connection_file))
    run(connected, "%kernel use rk")
    run(connected, "%px 'only two'")
    assert lines(capsys.readouterr().out)[-1].startswith("Out[0:")


def test_kernel_connect_name_gives_the_seed_interface(shell, four_kernels, monkeypatch):
    """%kernel connect ... --name rk binds a RemoteKernel: rk['b'] = 10 works at once."""
    monkeypatch.setenv("IPYTHONDIR", str(four_kernels[0].ipython_dir))
    run(shell, f"%kernel connect 127.0.0.1:{four_kernels[0].port} --name rk")
    run(shell, "rk['b'] = 10")
    assert run(shell, "rk['b']").result == 10


def test_usage_errors_say_what_to_type(shell, capsys):
    """Mistakes raise UsageError (no traceback) that says what to do instead."""
    result = run(shell, "%px 1")
    assert not result.success
    assert "%kernel start -n 2" in capsys.readouterr().err
    run(shell, "%kernel frobnicate")
    assert "invalid choice" in capsys.readouterr().err
    run(shell, "%kernel")
    assert "say what to do" in capsys.readouterr().err


def test_magic_help_shows_usage(shell):
    """%px? and %kernel? docstrings carry usage and an example session."""
    px = shell.find_line_magic("px").__doc__
    assert "--targets" in px and "Out[0:1]" in px
    assert "%kernel start" in shell.find_line_magic("kernel").__doc__


def test_ctrl_c_interrupts_the_kernels(connected, capsys):
    """Ctrl-C while %px waits interrupts the kernels and says so; they stay usable."""
    main = threading.main_thread().ident
    threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT)).start()
    started = time.monotonic()
    run(connected, "%px import time; time.sleep(30)")
    assert time.monotonic() - started < 20
    assert "interrupted kernels 0, 1, 2, 3" in capsys.readouterr().err
    run(connected, "%px 1 + 1")
    assert lines(capsys.readouterr().out)[-1].endswith("]: 2")


def test_kernel_start_and_unload_stops_them(ipython_dir, capsys):
    """%kernel start -n 2 starts and activates kernels; %unload_ext stops them (by pid)."""
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext ipython_parallel_kernel")
    try:
        ip.run_cell("%kernel start -n 2")
        assert "started 2 kernels" in capsys.readouterr().out
        magics = ip.magics_manager.registry["KernelMagics"]
        pids = [k.kernel_info["pid"] for k in magics.active]
        ip.run_cell("%px x = 1")
    finally:
        ip.run_cell("%unload_ext ipython_parallel_kernel")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
    assert ip.find_line_magic("px") is None


def test_kernel_stop_of_every_started_kernel_removes_the_cluster_file(ipython_dir, capsys):
    """%kernel stop of all the kernels %kernel start made removes their cluster file at once."""
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext ipython_parallel_kernel")
    security = ipython_dir / "profile_default" / "security"
    try:
        ip.run_cell("%kernel start -n 2")
        assert "started 2 kernels" in capsys.readouterr().out
        magics = ip.magics_manager.registry["KernelMagics"]
        files = security.glob("ipk-cluster-session-*.json")
        [cluster_file] = [p for p in files if "-kernel-" not in p.name]
        ip.run_cell("%kernel stop 0")
        assert cluster_file.exists() and len(magics.started.clusters) == 1
        ip.run_cell("%kernel stop")
        assert "stopped" in capsys.readouterr().out
        assert not cluster_file.exists()
        assert magics.started.clusters == []
    finally:
        ip.run_cell("%unload_ext ipython_parallel_kernel")
    assert not list(security.glob("ipk-*.json"))


def test_kernel_start_follows_the_profile_and_starts_kernels_from_this_process(ipython_dir, capsys):
    """%kernel start reads the profile's ipk_cluster_config.py (c.Cluster.n, kernel_args)
    and starts the kernels itself: they are children of this process, not of an
    ipk-cluster command; -n on the line wins over the profile."""
    profile = ipython_dir / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipk_cluster_config.py").write_text(
        "c.Cluster.n = 3\nc.Cluster.kernel_args = ['--allow', '10.9.8.0/24']\n"
    )
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext ipython_parallel_kernel")
    try:
        ip.run_cell("%kernel start")
        assert "started 3 kernels" in capsys.readouterr().out
        magics = ip.magics_manager.registry["KernelMagics"]
        for kernel in magics.active:
            pid = kernel.kernel_info["pid"]
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            assert parent == os.getpid()
            assert "10.9.8.0/24" in kernel.status()["allow"]
        ip.run_cell("%kernel stop")
        ip.run_cell("%kernel start -n 1")
        assert "started 1 kernel:" in capsys.readouterr().out
    finally:
        ip.run_cell("%unload_ext ipython_parallel_kernel")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_profile_config_reaches_the_magics():
    """c.KernelMagics.<trait> in the shell's config sets the magics' options."""
    ip = InteractiveShell.instance()
    ip.config.KernelMagics.progress_after = 7.5
    ip.config.KernelMagics.stream = False
    ip.run_cell("%load_ext ipython_parallel_kernel")
    try:
        magics = ip.magics_manager.registry["KernelMagics"]
        assert magics.progress_after == 7.5 and magics.stream is False
    finally:
        ip.run_cell("%unload_ext ipython_parallel_kernel")
        del ip.config.KernelMagics


def test_kernel_gather_and_notify(connected, capsys):
    """%kernel gather 0 listens here; %kernel notify (no address) points kernels at it."""
    run(connected, "%kernel notify")
    assert "%kernel gather" in capsys.readouterr().err
    capsys.readouterr()
    run(connected, "%kernel gather 0")
    out = capsys.readouterr().out
    assert out.startswith("gathering on 127.0.0.1:"), out
    magics = connected.magics_manager.registry["KernelMagics"]
    gatherer = magics.gatherer
    where = out.split()[-1]
    try:
        run(connected, "%kernel notify")
        assert f"now notify {where}" in capsys.readouterr().out
        run(connected, "%px c = 41 + 1")
        deadline = time.monotonic() + 30
        while len(gatherer.records) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["source"] for r in gatherer.records] == ["c = 41 + 1"] * 4
    finally:
        run(connected, "%kernel notify --stop")
        assert f"no longer notify {where}" in capsys.readouterr().out
        run(connected, "%kernel gather --stop")
    assert magics.gatherer is None
    assert "stopped gathering" in capsys.readouterr().out


def test_gather_knows_a_kernel_connected_by_key(shell, four_kernels, tmp_path, monkeypatch):
    """%kernel gather accepts the records of an active kernel given by address and key."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))  # no connection file to find the key in
    info = json.loads(four_kernels[0].connection_file.read_text())
    shell.user_ns["rk"] = RemoteKernel(four_kernels[0].address, key=info["key"], timeout=30)
    assert shell.user_ns["rk"].info.path is None
    run(shell, "%kernel use rk")
    assert run(shell, "%kernel gather 0").success
    magics = shell.magics_manager.registry["KernelMagics"]
    try:
        run(shell, "%kernel notify")
        run(shell, "%px by_key = 1")
        wait_for(lambda: [r["source"] for r in magics.gatherer.records] == ["by_key = 1"])
    finally:
        run(shell, "%kernel notify --stop")
        run(shell, "%kernel gather --stop")


def test_activate_makes_a_cluster_the_px_target(shell, four_kernels, capsys):
    """ic.activate() in a session makes %px run on that cluster."""
    cluster = InteractiveCluster([str(k.connection_file) for k in four_kernels[1:3]])
    assert cluster.activate() is cluster
    capsys.readouterr()
    run(shell, "%px 'here'")
    assert len(lines(capsys.readouterr().out)) == 2
    cluster.disconnect()


def test_close_undoes_its_atexit_registration(tmp_path):
    """The magics close at interpreter exit unless unloaded before: %unload_ext (close)
    removes their exit hook, so an unloaded session's magics are not closed again."""

    script = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "class Noted:\n"
        "    def __init__(self, name): self.name = name\n"
        "    def stop_all(self): print(self.name, 'closed', flush=True)\n"
        "for name in ('unloaded', 'loaded'):\n"
        "    ip.run_cell('%load_ext ipython_parallel_kernel')\n"
        "    ip.magics_manager.registry['KernelMagics'].started = Noted(name)\n"
        "    if name == 'unloaded':\n"
        "        ip.run_cell('%unload_ext ipython_parallel_kernel')\n"
        "print('exiting', flush=True)\n"
    )
    done = run_fresh_session(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["unloaded closed", "exiting", "loaded closed", ""]


def test_help_is_argparse_help(shell):
    """%kernel? lists every verb with its help, %px? every option: argparse's help."""
    kernel = shell.find_line_magic("kernel").__doc__
    for verb in ("start", "connect", "list", "use", "stop", "gather", "notify", "allow", "deny"):
        assert verb in kernel.split("positional arguments:")[1]
    assert "start local kernels and activate them" in kernel
    px = shell.find_line_magic("px").__doc__
    for option in ("--noblock", "--no-stream", "--group-outputs", "--out"):
        assert option in px


def test_verb_mistakes_show_the_verbs_usage(shell, capsys):
    """A wrong option to a verb is a UsageError with that verb's usage, not a traceback."""
    result = run(shell, "%kernel start -n many")
    assert not result.success
    assert type(result.error_in_exec).__name__ == "UsageError"
    err = capsys.readouterr().err
    assert "invalid int value: 'many'" in err and "%kernel start [-n N]" in err
    assert "Traceback" not in err
    run(shell, "%kernel start -n 0")
    assert "1 or more" in capsys.readouterr().err


def test_kernel_connect_takes_quoted_paths(shell, four_kernels, tmp_path, capsys):
    """%kernel connect splits words as a shell does: a quoted path with a space works."""
    spaced = tmp_path / "with space.json"
    spaced.write_text(four_kernels[0].connection_file.read_text())
    run(shell, f'%kernel connect "{spaced}"')
    assert f"connected to 127.0.0.1:{four_kernels[0].port}" in capsys.readouterr().out


def test_the_client_never_imports_the_magics():
    """No module of the client imports the magics (the dependency points down)."""
    import ast
    from pathlib import Path

    import ipython_parallel_kernel.client as client

    for path in Path(client.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert "magics" not in module, f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert not any("magics" in a.name for a in node.names), path.name


def test_activate_loads_the_extension_in_a_fresh_session(tmp_path):
    """ic.activate() in a session that never loaded the extension loads it and makes the
    cluster the %px target; importing the client alone does not load the magics."""

    script = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from ipython_parallel_kernel.client.cluster import InteractiveCluster\n"
        "assert 'ipython_parallel_kernel.magics' not in sys.modules\n"
        "ip = InteractiveShell.instance()\n"
        "ic = InteractiveCluster()\n"
        "assert ic.activate() is ic\n"
        "assert ip.magics_manager.registry['KernelMagics'].active is ic\n"
        "assert ip.find_line_magic('px') is not None\n"
        "print('ok')\n"
    )
    done = run_fresh_session(script, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_px_execution_options_as_in_ipyparallel(connected, capsys):
    """-a/--noblock and -b/--block, --verbose, -t, -e/-r and --progress-after, as in
    ipyparallel; --local also runs the cell here."""
    shell = connected
    run(shell, "%%px -a -o pending\nimport time; time.sleep(0.2)")
    pending = shell.user_ns.pop("pending")
    assert pending.get(30) and len(pending.get(30)) == 4
    run(shell, "%%px -b --verbose -t 0,2 -e --progress-after -1\nimport os; os.getpid() * 0")
    out = capsys.readouterr().out
    assert "Parallel execution on kernels 0, 2" in out
    assert "Out[0:" in out and "Out[2:" in out and "Out[1:" not in out
    result = run(shell, "%%px --local -r\nlocal_and_remote = 7")
    assert result.success and shell.user_ns.pop("local_and_remote") == 7
    assert InteractiveCluster(connected_files(shell)).pull("local_and_remote") == [7] * 4


def test_pxconfig_sets_the_defaults(connected, capsys):
    """%pxconfig changes what %px does until changed again; a bad target is refused."""
    shell = connected
    magics = shell.magics_manager.registry["KernelMagics"]
    try:
        run(shell, "%pxconfig --noblock -t ::2 --verbose")
        capsys.readouterr()
        pending = run(shell, "%px 1 + 1").result
        assert "Async parallel execution on kernels 0, 2" in capsys.readouterr().out
        assert pending.get(30) is not None and len(pending.get(30)) == 2
        run(shell, "%pxconfig -b --no-verbose -t all")
        run(shell, "%px 2 + 2")
        assert lines(capsys.readouterr().out)[-1].endswith("]: 4")
        failed = run(shell, "%pxconfig -t 9")
        assert not failed.success
    finally:
        magics.block, magics.targets, magics.verbose = True, None, False


def test_pxresult_waits_for_a_noblock_px_and_takes_ipyparallels_options(connected, capsys):
    """After %px --noblock, %pxresult waits for it and shows it; -o stores the
    ClusterResult without showing; -e, -r and --group-outputs group the output."""
    shell = connected
    run(shell, "%%px --noblock\nimport time; time.sleep(0.3); print('slept'); 6 * 7")
    capsys.readouterr()
    assert run(shell, "%pxresult").success
    out = capsys.readouterr().out
    assert out.count("[stdout:") == 4 and out.count("]: 42") == 4
    assert run(shell, "%pxresult -o kept").success
    assert capsys.readouterr().out == ""
    kept = shell.user_ns.pop("kept")
    assert kept.get(30) is not None and [r.text for r in kept.get(30)] == ["42"] * 4
    for option in ("-e", "-r", "--group-outputs type"):
        assert run(shell, f"%pxresult {option}").success
        assert capsys.readouterr().out.count("]: 42") == 4
    run(shell, "%%px --noblock\n1 / 0")
    failed = run(shell, "%pxresult")
    assert not failed.success and "ZeroDivisionError" in repr(failed.error_in_exec)


def test_activate_with_a_suffix_registers_magics_of_its_own(connected, rc, capsys):
    """rc.activate(targets, suffix) gives %px<suffix>, %%px<suffix>, %pxresult<suffix> and
    %autopx<suffix> on those kernels, labelled by kernel id; plain %px is unchanged."""
    shell = connected
    view = rc.activate(targets=[0, 2], suffix="_even")
    assert view.block is True and view.targets == [0, 2]
    for name in ("px_even", "pxresult_even", "autopx_even", "pxconfig_even"):
        assert shell.find_line_magic(name) is not None, name
    assert shell.find_cell_magic("px_even") is not None
    capsys.readouterr()
    run(shell, "%px_even import os; print('here')")
    out = capsys.readouterr().out
    assert "[stdout:0] here" in out and "[stdout:2] here" in out and "[stdout:1]" not in out
    run(shell, "%%px_even\n5 * 5")
    out = capsys.readouterr().out
    assert "Out[0:" in out and "Out[2:" in out and "Out[1:" not in out
    run(shell, "%pxresult_even")
    assert capsys.readouterr().out.count("]: 25") == 2
    run(shell, "%autopx_even")
    run(shell, "autopx_value = 3")
    run(shell, "%autopx_even")
    assert "autopx_value" not in shell.user_ns
    assert rc[[0, 2]].pull("autopx_value", block=True) == [3, 3]
    run(shell, "%px 'everywhere'")
    assert capsys.readouterr().out.count("'everywhere'") == 4


def test_an_activated_view_lends_px_its_targets_and_block(connected, rc, capsys):
    """A DirectView made active: %px runs on its targets, blocking as the view does."""
    shell = connected
    view = rc[1:3]
    view.block = False
    assert view.activate() is view
    pending = run(shell, "%px 'async'").result
    assert pending is not None and [r.text for r in pending.get(30)] == ["'async'"] * 2
    view.block = True
    capsys.readouterr()
    run(shell, "%px 'sync'")
    out = capsys.readouterr().out
    assert "Out[1:" in out and "Out[2:" in out and "Out[0:" not in out


def test_broadcast_view_is_a_direct_view(rc):
    """rc.broadcast_view() runs on every target like rc[:] (no scheduler to go through)."""
    from ipython_parallel_kernel import BroadcastView, DirectView, interactive

    view = rc.broadcast_view(is_coalescing=True)
    assert isinstance(view, BroadcastView) and isinstance(view, DirectView)
    assert view.is_coalescing and repr(view).startswith("<BroadcastView")
    view["b"] = 10
    assert view.apply_sync(interactive(lambda: b * 2)) == [20] * 4  # noqa: F821


def test_the_first_client_in_a_session_gives_it_px(tmp_path, four_kernels):
    """As ipyparallel: ipp.Client() in a fresh IPython session loads the magics and makes
    %px run on all its kernels, with no %load_ext; a second client does not take over."""

    script = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "import ipython_parallel_kernel as ipp\n"
        "ip = InteractiveShell.instance()\n"
        "ip.colors = 'nocolor'\n"
        f"rc = ipp.Client({str(four_kernels[0].connection_file)!r})\n"
        "assert ip.find_line_magic('px') is not None\n"
        "assert ip.run_cell('%px first = 1').success\n"
        "assert rc[:].pull('first', block=True) == [1]\n"
        f"other = ipp.Client({str(four_kernels[1].connection_file)!r})\n"
        "magics = ip.magics_manager.registry['KernelMagics']\n"
        "assert magics.view.client is rc\n"
        "print('ok')\n"
    )
    done = run_fresh_session(script, tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
