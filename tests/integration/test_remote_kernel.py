"""RemoteKernel against real ipk-kernel processes on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from threading import current_thread

import numpy as np
import pytest
from conftest import check_abort_drops_the_queue, start_kernel, wait_for

from ipython_parallel_kernel import Reference, RemoteKernel, interactive
from ipython_parallel_kernel.client.kernel import AsyncResult, ExecuteResult
from ipython_parallel_kernel.errors import KernelDied, KernelTimeout, KeyNotFound, RemoteError


def test_seed_session_verbatim(kernel):
    """The 2005 note's session works as written: execute, push(value, name), pull."""
    rk = RemoteKernel(("127.0.0.1", kernel.port))
    rk.execute("a = 5")
    rk.push(10, "b")
    assert rk.pull("b") == 10
    assert rk.pull("a") == 5
    rk.disconnect()


def test_dictionary_interface(rk):
    """rk['b'] = 10 pushes, rk['b'] pulls, del and `in` work, missing names raise KeyError."""
    rk["b"] = 10
    assert rk["b"] == 10
    assert "b" in rk
    assert "b" in list(rk)
    del rk["b"]
    assert "b" not in rk
    with pytest.raises(KeyError):
        rk["b"]
    with pytest.raises(KeyError):
        del rk["b"]


def test_push_dict_and_pull_list(rk):
    """push({...}) binds several names; pull([...]) returns their values in order."""
    rk.push({"a": 1, "b": [2, 3], "c": {"d": 4}})
    assert rk.pull(["c", "a", "b"]) == [{"d": 4}, 1, [2, 3]]


def test_failed_push_leaves_namespace_unchanged(rk):
    """A push whose value cannot be rebuilt on the kernel binds none of its names."""

    def explode() -> None:
        raise RuntimeError("cannot be rebuilt here")

    class Unloadable:
        def __reduce__(self):
            return (explode, ())

    rk["keep"] = "old"
    with pytest.raises(RemoteError) as info:
        rk.push({"keep": "new", "ok": 1, "bad": Unloadable()})
    assert "cannot be rebuilt here" in str(info.value)
    assert rk["keep"] == "old"
    assert "ok" not in rk


def test_push_rejects_bad_names_locally(rk):
    """Invalid Python names are refused before anything is sent."""
    with pytest.raises(ValueError, match="not valid Python names"):
        rk.push({"not a name": 1})


def test_execute_result_fields(rk):
    """A blocking execute returns stdout, stderr, display data, number and timings."""
    result = rk.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n6 * 7")
    assert isinstance(result, ExecuteResult)
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.result == {"text/plain": "42"}
    assert result.text == "42"
    assert result.number >= 1
    assert result.completed >= result.started >= result.submitted > 0
    assert "Out[" in repr(result) and "[stdout] out" in repr(result)


def test_execute_numbers_increase(rk):
    """Every command gets the next number."""
    first = rk.execute("x = 1").number
    assert rk.execute("x = 2").number == first + 1


def test_nonblocking_execute_is_a_future(rk):
    """block=False returns an AsyncResult: a Future with get, ready, wait and callbacks."""
    seen: list[ExecuteResult] = []
    result = rk.execute("import time; time.sleep(0.3); 'done'", block=False)
    assert isinstance(result, AsyncResult) and isinstance(result, Future)
    result.add_done_callback(lambda f: seen.append(f.result()))
    assert not result.ready()
    assert result.wait(30)
    assert result.ready()
    assert result.get(1).text == "'done'"
    assert seen and seen[0].text == "'done'"


def test_block_attribute_sets_the_default(rk):
    """rk.block = False makes every call non-blocking until set back."""
    rk.block = False
    pending = rk.execute("1 + 1")
    assert isinstance(pending, AsyncResult)
    assert pending.get(30).text == "2"
    rk.block = True
    assert isinstance(rk.execute("1 + 1"), ExecuteResult)


def test_get_timeout_says_what_to_do(rk):
    """get(timeout) on a running command raises KernelTimeout that names the kernel."""
    pending = rk.execute("import time; time.sleep(2)", block=False)
    with pytest.raises(KernelTimeout, match="interrupt"):
        pending.get(0.1)
    assert pending.get(30) is not None


def test_remote_traceback_text(rk):
    """A remote exception raises RemoteError with the remote traceback's text."""
    with pytest.raises(RemoteError) as info:
        rk.execute("def f():\n    return 1 / 0\n\nf()")
    error = info.value
    assert error.ename == "ZeroDivisionError"
    assert error.evalue == "division by zero"
    text = "".join(error.traceback)
    assert "<ipk-input-" in text and "return 1 / 0" in text and "in f" in text
    assert rk.name in error.render_traceback()
    assert error._render_traceback_()[-1] == "ZeroDivisionError: division by zero"
    assert error.result.number == error.number


def test_output_before_an_error_is_kept(rk):
    """What a failing command printed is on the error's result and in the history."""
    with pytest.raises(RemoteError) as info:
        rk.execute("print('before')\nraise ValueError('boom')")
    assert info.value.result.stdout == "before\n"
    assert rk.result().stdout == "before\n"
    assert rk.result().error["ename"] == "ValueError"


def test_run_file(rk, tmp_path: Path):
    """run(filename) executes a local file on the kernel; tracebacks name the file."""
    script = tmp_path / "job.py"
    script.write_text("total = sum(range(10))\nprint(total)\n")
    assert rk.run(script).stdout == "45\n"
    assert rk["total"] == 45
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise KeyError('nope')\n")
    with pytest.raises(RemoteError) as info:
        rk.run(broken)
    assert str(broken) in "".join(info.value.traceback)


def test_apply_ships_lambdas_and_closures(rk):
    """apply runs lambdas, closures and kwargs remotely and returns the value."""
    offset = 100

    def add(x, *, y=0):
        return x + y + offset

    assert rk.apply(lambda x: x + 1, 1) == 2
    assert rk.apply(add, 1, y=2) == 103
    assert rk.apply_async(add, 5).get(30) == 105


def test_apply_sees_the_kernel_namespace(rk):
    """An interactively defined function reads kernel names it does not capture."""
    rk["remote_only"] = 41
    namespace: dict = {"__name__": "__main__"}
    exec("def peek():\n    return remote_only + 1\n", namespace)
    assert rk.apply(namespace["peek"]) == 42


def test_reference_arguments_are_the_kernels_values(rk):
    """Reference('name') arguments (and items of a list or dict argument) are the
    kernel's values when the call runs; the value never travels."""
    rk.execute("data = list(range(10)); scale = 3")
    assert rk.apply(len, Reference("data")) == 10
    assert rk.apply(lambda xs, k=1: [x * k for x in xs], [Reference("scale")], k=2) == [6]
    assert rk.apply(lambda d: d["s"] + 1, {"s": Reference("scale")}) == 4
    assert rk.apply(lambda n: n, Reference("data[2] * scale")) == 6
    with pytest.raises(RemoteError, match="NameError"):
        rk.apply(print, Reference("missing_name"))
    with pytest.raises(TypeError, match="names a variable"):
        Reference(5)  # type: ignore[arg-type]


def test_interactive_functions_use_the_kernels_globals(rk):
    """A module function marked @interactive runs with the kernel's namespace as its
    globals: it reads kernel names and binds globals there."""
    rk["base"] = 100
    assert rk.apply(module_function_reading_base) == 101
    rk.apply(module_function_binding_result)
    assert rk["result_from_function"] == "bound on the kernel"


def test_what_an_applied_function_prints_comes_back_with_it(rk):
    """print() inside apply goes back to the caller (AsyncResult.stdout and .stderr), not
    to the kernel's log; output before an error is kept too."""
    import sys

    def chatty(x):
        print("working on", x)
        print("careful", file=sys.stderr)
        return x * 2

    result = rk.apply_async(chatty, 21)
    assert result.get(30) == 42
    assert (result.stdout, result.stderr) == ("working on 21\n", "careful\n")

    def fails():
        print("before the error")
        raise ValueError("no")

    failed = rk.apply_async(fails)
    with pytest.raises(RemoteError, match="ValueError"):
        failed.get(30)
    assert failed.stdout == "before the error\n"
    assert rk.execute("print('still captured per command')").stdout.startswith("still")


def test_apply_remote_error(rk):
    """An exception raised by an applied function arrives as RemoteError."""
    with pytest.raises(RemoteError) as info:
        rk.apply(lambda: {}["missing"])
    assert info.value.ename == "KeyError"


def test_result_history(rk):
    """result(n) returns command n; result() the last; errors are returned, not raised."""
    first = rk.execute("print('one')").number
    rk.execute("2 + 2")
    with pytest.raises(RemoteError):
        rk.execute("undefined_name")
    assert rk.result(first).stdout == "one\n"
    assert rk.result(first + 1).text == "4"
    last = rk.result()
    assert last.error["ename"] == "NameError"
    assert last.source == "undefined_name"
    with pytest.raises(RemoteError, match="no command 9999"):
        rk.result(9999)


def test_status(rk, kernel):
    """status() reports state, queue, commands run, gui, pid and host."""
    rk.execute("a = 1")
    status = rk.status()
    assert status["state"] == "idle"
    assert status["queued"] == 0
    assert status["commands_run"] >= 1
    assert status["gui"] == "none"
    assert status["pid"] == kernel.pid
    assert status["host"]
    running = rk.execute("import time; time.sleep(1)", block=False)
    queued = [rk.execute("b = 2", block=False) for _ in range(3)]
    assert rk.status()["state"] == "busy"
    wait_for(lambda: rk.status()["queued"] == 3)
    running.get(30)
    for q in queued:
        q.get(30)


def test_reset(rk):
    """reset() empties the namespace."""
    rk["a"] = 1
    rk.reset()
    assert "a" not in rk
    assert rk.keys() == []


def test_abort_drops_the_queue(rk):
    """abort() drops queued commands (they fail with Aborted); the running one finishes."""
    check_abort_drops_the_queue(rk)


def running(rk, loop: str) -> AsyncResult:
    """Start ``loop`` without blocking; return once it runs (it prints first)."""
    started = threading.Event()
    source = f"print('started', flush=True)\n{loop}"
    result = rk.execute(source, block=False, on_output=lambda name, text: started.set())
    assert started.wait(30), "the command did not start"
    return result


def test_interrupt_busy_loop_then_use_again(rk):
    """interrupt() stops a running `while True: pass`; the kernel then runs commands as before."""
    looping = running(rk, "while True: pass")
    assert rk.interrupt() is True
    with pytest.raises(RemoteError) as info:
        looping.get(30)
    assert info.value.ename == "KeyboardInterrupt"
    assert rk.execute("40 + 2").text == "42"


def test_interrupt_wakes_sleep(rk):
    """interrupt() also stops a blocking call such as time.sleep (a real SIGINT)."""
    sleeping = running(rk, "import time; time.sleep(60)")
    rk.interrupt()
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        sleeping.get(30)
    assert rk.interrupt() is False


def test_interrupt_right_behind_a_command_reaches_it(rk):
    """An interrupt sent right after a non-blocking execute stops that command, every
    time, whether or not it had started when the interrupt arrived."""
    for _ in range(60):
        sleeping = rk.execute("import time\ntime.sleep(60)", block=False)
        assert rk.interrupt() is True
        with pytest.raises(RemoteError, match="KeyboardInterrupt"):
            sleeping.get(30)
    assert rk.execute("'alive'").text == "'alive'"


def test_interrupt_when_idle_is_harmless(rk):
    """interrupt() with nothing running returns False and changes nothing."""
    rk["a"] = 1
    assert rk.interrupt() is False
    assert rk["a"] == 1


def test_thousand_mixed_operations_apply_in_order(rk):
    """1,000 queued execute/push/apply/pull from one client take effect in the order sent."""
    rk.execute("log = []")

    def append_to_log(i: int) -> None:
        # The kernel's namespace is its __main__ module, so this reaches the kernel's log.
        __import__("__main__").log.append(i)

    pending = []
    pulls = []
    for i in range(1000):
        kind = i % 3
        if kind == 0:
            pending.append(rk.execute(f"log.append({i})", block=False))
        elif kind == 1:
            pending.append(rk.push({"last": i}, block=False))
            pending.append(rk.execute("log.append(last)", block=False))
        else:
            pending.append(rk.apply_async(append_to_log, i))
        if i % 50 == 49:
            pulls.append((i, rk.pull("log", block=False)))
    for p in pending:
        p.get(60)
    assert rk["log"] == list(range(1000))
    for i, pull in pulls:
        assert pull.get(60) == list(range(i + 1))


def test_two_clients_share_one_namespace(kernel):
    """Two clients of one kernel see one namespace."""
    one = RemoteKernel(kernel.address, timeout=30)
    two = RemoteKernel(kernel.address, timeout=30)
    one["shared"] = [1, 2]
    assert two["shared"] == [1, 2]
    two.execute("shared.append(3)")
    assert one["shared"] == [1, 2, 3]
    assert one.status()["clients"] == 2
    one.disconnect()
    two.disconnect()


def test_disconnect_leaves_kernel_running(kernel):
    """disconnect() closes one client; the kernel and its namespace live on."""
    first = RemoteKernel(kernel.address, timeout=30)
    first["a"] = 5
    first.disconnect()
    with pytest.raises(KernelDied):
        first.execute("1")
    second = RemoteKernel(kernel.address, timeout=30)
    assert second["a"] == 5
    second.disconnect()


def test_kill_stops_the_kernel_and_tells_other_clients(kernel):
    """kill() shuts the kernel down: its process exits, its file goes, others are told."""
    killer = RemoteKernel(kernel.address, timeout=30)
    watcher = RemoteKernel(kernel.address, timeout=30)
    killer.kill()
    assert kernel.process.wait(30) == 0
    assert not kernel.connection_file.exists()
    with pytest.raises(KernelDied, match="shutting down"):
        watcher.execute("1")


def test_notify_is_recorded(rk):
    """notify(addr) registers a gatherer address; notify(addr, False) removes it."""
    assert rk.notify(("127.0.0.1", 10104)) == ["127.0.0.1:10104"]
    assert rk.status()["notify"] == ["127.0.0.1:10104"]
    assert rk.notify("127.0.0.1:10104", False) == []


def test_numpy_arrays_round_trip(rk):
    """Arrays of several sizes and dtypes come back equal; a pulled big array is writable."""
    for array in (np.arange(10), np.ones((512, 512)), np.arange(3_000_000, dtype=np.int32)):
        rk["x"] = array
        back = rk["x"]
        assert back.dtype == array.dtype and np.array_equal(back, array)
    back[0] = 7
    assert back[0] == 7


def test_concurrent_callers_on_one_client(rk):
    """Several threads may share one RemoteKernel; each gets its own reply."""
    results: dict[int, int] = {}

    def work(i: int) -> None:
        results[i] = rk.apply(lambda v: v * 2, i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: i * 2 for i in range(8)}


def test_missing_key_says_where_it_looked(kernel, tmp_path, monkeypatch):
    """With no key and no connection file, the error says exactly where it looked."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(empty))
    with pytest.raises(KeyNotFound) as info:
        RemoteKernel(kernel.address)
    assert str(empty / "profile_default" / "security") in str(info.value)
    assert "key=" in str(info.value)


def test_connect_by_connection_file_and_key(kernel, tmp_path, monkeypatch):
    """A connection file path, or an address plus key=, both connect."""
    by_file = RemoteKernel(str(kernel.connection_file), timeout=30)
    by_file["a"] = 3
    key = by_file.info.key
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "nowhere"))
    by_key = RemoteKernel(f"127.0.0.1:{kernel.port}", key=key, timeout=30)
    assert by_key["a"] == 3
    by_file.disconnect()
    by_key.disconnect()


def test_no_kernel_there(ipython_dir):
    """Connecting to a port where no kernel listens says so, and how to start one."""
    from ipython_parallel_kernel.errors import ConnectionFailed

    with pytest.raises(ConnectionFailed, match="ipk-kernel --port 1"):
        RemoteKernel(("127.0.0.1", 1), key="00")


def test_a_blocking_call_reads_its_reply_on_its_own_thread(rk):
    """With nothing else outstanding, the waiting thread reads its own reply (its output
    callbacks run there); requests nobody waits for are still read by the reactor."""
    threads: set[str] = set()
    result = rk.execute("print('hi')", on_output=lambda n, t: threads.add(current_thread()))
    assert result.stdout == "hi\n"
    assert threads == {current_thread()}
    for _ in range(20):
        assert rk.apply(lambda x: x + 1, 1) == 2
    pending = [rk.execute(f"{i}", block=False) for i in range(5)]
    assert [p.get(30).text for p in pending] == [str(i) for i in range(5)]
    assert rk.pull("__name__") == "__main__"


def test_a_callback_may_send_the_next_request(rk):
    """A done callback (run on the thread that read the reply) may send another
    request, as a load balancer does, and that one completes too."""
    second: Future = Future()

    def send_next(first: AsyncResult) -> None:
        value = first.result()
        rk.apply_async(lambda: value + 1).add_done_callback(lambda r: second.set_result(r.result()))

    rk.apply_async(lambda: 1).add_done_callback(send_next)
    assert second.result(30) == 2
    assert rk.apply(lambda: 3) == 3  # blocking calls still read their own replies after


def test_a_kernel_lost_while_the_client_is_idle_is_noticed_with_no_call_made(kernel):
    """After blocking calls nobody reads the idle connection; its loss is still seen by
    the next heartbeat, and the next call says the kernel is gone instead of waiting."""
    client = RemoteKernel(kernel.address, timeout=30, heartbeat=1.0)
    for _ in range(5):
        client.execute("1")
    kernel.process.kill()
    kernel.process.wait(30)
    wait_for(lambda: "disconnected" in repr(client), timeout=10)
    with pytest.raises(KernelDied, match=client.name):
        client.execute("1")


def test_the_next_call_after_an_unnoticed_loss_fails_at_once(kernel):
    """With no heartbeat, a kernel lost while the client was idle is found by the next
    blocking call itself, which fails naming the kernel."""
    client = RemoteKernel(kernel.address, timeout=30, heartbeat=0)
    client.execute("1")
    kernel.process.kill()
    kernel.process.wait(30)
    started = time.monotonic()
    with pytest.raises(KernelDied, match=client.name):
        client.execute("1")
    assert time.monotonic() - started < 25  # well inside the call's own 30 s deadline


def test_output_streams_while_the_command_runs(rk):
    """on_output receives printed text during a long command, before its reply."""
    chunks: list[tuple[str, str]] = []
    source = (
        "import sys, time\n"
        "print('first', flush=True)\n"
        "time.sleep(1.0)\n"
        "print('oops', file=sys.stderr)\n"
        "print('last')\n"
    )
    pending = rk.execute(source, block=False, on_output=lambda n, t: chunks.append((n, t)))
    wait_for(lambda: bool(chunks))
    assert chunks[0] == ("stdout", "first\n")
    assert not pending.done()
    result = pending.get(30)
    streamed = {name: "".join(t for n, t in chunks if n == name) for name in ("stdout", "stderr")}
    assert streamed == {"stdout": result.stdout, "stderr": result.stderr}
    assert result.stdout == "first\nlast\n" and result.stderr == "oops\n"


def test_interrupt_always_wakes_a_sleep(rk):
    """An interrupt that lands just before time.sleep starts still ends it at once."""
    for _ in range(30):
        sleeping = rk.execute("import time\ntime.sleep(60)", block=False)
        wait_for(rk.interrupt)
        with pytest.raises(RemoteError, match="KeyboardInterrupt"):
            sleeping.get(10)
    assert rk.execute("'alive'").text == "'alive'"


def test_a_kernel_can_drive_another_kernel(rk, ipython_dir):
    """User code on a kernel can be a client of another kernel."""
    other = start_kernel(ipython_dir)
    try:
        rk["other"] = str(other.connection_file)
        rk.execute("from ipython_parallel_kernel import RemoteKernel\nclient = RemoteKernel(other)")
        assert rk.execute("client.execute('6 * 7').text").text == "'42'"
        assert rk.execute("client.disconnect()").error is None
    finally:
        other.stop()


@pytest.mark.parametrize("exit_type", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_result_whose_pickling_exits_is_an_error_reply(rk, kernel, exit_type):
    """A pull or apply result whose pickling raises SystemExit (or kin) is an error reply;
    the kernel and its namespace live on."""
    rk.execute(
        f"class Unpicklable:\n    def __reduce__(self):\n        raise {exit_type}('no')\n"
        "bad = Unpicklable()\nkept = 42"
    )
    with pytest.raises(RemoteError) as pulled:
        rk.pull("bad")
    assert pulled.value.ename == exit_type
    with pytest.raises(RemoteError) as applied:
        rk.apply(lambda: __import__("__main__").bad)
    assert applied.value.ename == exit_type
    assert kernel.process.poll() is None
    assert rk["kept"] == 42


def test_a_malformed_request_is_refused_naming_the_field_and_the_kernel_keeps_serving(rk):
    """A pull_request whose names is a number, sent past the client's own checks, is a
    TypeError reply naming 'names'; the same connection then executes and pulls."""
    rk.push(3, "x")
    sent = rk._protocol.request("pull_request", {"names": 5}, rk._payload, "pull")
    with pytest.raises(RemoteError) as caught:
        sent.get(10)
    assert caught.value.ename == "TypeError"
    assert caught.value.evalue == "pull_request: field 'names' must be list[str], got int"
    assert rk.execute("x + 1").text == "4"
    assert rk.pull("x") == 3


def test_requests_are_checked_against_the_schema_before_they_are_sent(rk):
    """A field of the wrong type raises TypeError here, naming the field, and sends nothing."""
    with pytest.raises(TypeError, match="notify_request: field 'flag' must be bool, got str"):
        rk.notify("127.0.0.1:9", flag="yes")
    assert rk.status()["notify"] == []


def test_requests_racing_a_lost_connection_each_fail_once(ipython_dir):
    """Threads sending requests while the kernel dies: every request completes with
    KernelDied, none is left waiting, and no future is completed twice (which would
    raise InvalidStateError on the reactor thread and leave later requests hanging)."""
    kernel = start_kernel(ipython_dir)
    rk = RemoteKernel(kernel.address, timeout=30)
    results: list[Future] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def send_until_stopped() -> None:
        try:
            while not stop.is_set():
                results.append(rk.execute("pass", block=False))
        except BaseException as e:  # the client must not raise here: it returns futures
            errors.append(e)

    senders = [threading.Thread(target=send_until_stopped) for _ in range(4)]
    for sender in senders:
        sender.start()
    try:
        wait_for(lambda: len(results) > 200, 30)
        kernel.process.kill()
        wait_for(lambda: rk._protocol.lost_error is not None, 30)
    finally:
        stop.set()
        for sender in senders:
            sender.join(30)
        kernel.stop()
    assert errors == []
    assert all(result.done() or result.exception(30) for result in results)
    failed = [r for r in results if r.exception(0) is not None]
    assert failed and all(isinstance(r.exception(0), KernelDied) for r in failed)
    assert isinstance(rk.execute("pass", block=False).exception(5), KernelDied)


def test_every_verb_returns_a_future_with_block_false(rk):
    """block=False makes every verb group (code, namespace, history, control, access)
    return an AsyncResult whose get() is what the blocking call returns."""
    assert rk.execute("x = 1", block=False).get(30).number >= 1
    assert rk.push(2, "y", block=False).get(30) == ["y"]
    assert rk.pull("y", block=False).get(30) == 2
    assert "y" in rk.keys(block=False).get(30)
    assert rk.result(block=False).get(30).source == "x = 1"
    assert rk.status(block=False).get(30)["state"] == "idle"
    assert rk.interrupt(block=False).get(30) is False
    assert rk.abort(block=False).get(30) == 0
    assert "127.0.0.9/32" in rk.allow("127.0.0.9", block=False).get(30)["allow"]
    assert "127.0.0.9/32" in rk.deny("127.0.0.9", block=False).get(30)["deny"]
    assert isinstance(rk.notify(("127.0.0.1", 10104), False, block=False).get(30), list)
    assert rk.reset(block=False).get(30) is None
    assert rk.keys(block=True) == []


def test_object_default_rules_every_verb(rk):
    """With rk.block = False, verbs called without block= return AsyncResults, and an
    explicit block=True still waits; temp_flags sets the default for a with block."""
    rk.execute("1", block=True)
    rk.block = False
    futures = [rk.status(), rk.keys(), rk.result(), rk.reset()]
    assert all(isinstance(f, AsyncResult) for f in futures)
    for future in futures:
        future.get(30)
    # Sent alone: with commands queued, an interrupt or abort would stop them.
    assert rk.interrupt().get(30) is False
    assert rk.abort().get(30) == 0
    assert isinstance(rk.status(block=True), dict)
    rk.block = True
    with rk.temp_flags(block=False):
        assert isinstance(rk.keys(), AsyncResult)
    assert rk.keys() == []


def test_block_must_be_a_bool(rk):
    """A block= that is not True, False or None is refused before anything is sent."""
    with pytest.raises(TypeError, match="block must be"):
        rk.push(1, "z", block="no")
    assert "z" not in rk


def test_kill_without_block_returns_a_future(kernel):
    """kill(block=False) returns an AsyncResult; the client disconnects once it lands."""
    client = RemoteKernel(kernel.address, timeout=30, block=False)
    done = client.kill()
    assert isinstance(done, AsyncResult)
    done.get(30)
    assert wait_for(lambda: not client._protocol.open, 10)


@interactive
def module_function_reading_base():
    """A module-level function, sent by value because it is marked interactive."""
    return base + 1  # type: ignore[name-defined]  # noqa: F821  (the kernel's name)


@interactive
def module_function_binding_result():
    """Binds a global: on the kernel, since its globals are the kernel's namespace."""
    global result_from_function
    result_from_function = "bound on the kernel"
