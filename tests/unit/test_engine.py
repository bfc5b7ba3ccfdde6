"""Unit tests for the execution engine: history, capture, errors, namespace, queue, interrupt."""

from __future__ import annotations

import inspect
import io
import linecache
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from ipython_parallel_kernel.kernel.capture import CapturedStream
from ipython_parallel_kernel.kernel.engine import CommandRecord, Engine, EngineShutdown, Job

WAIT = 10.0  # upper bound for things that should happen at once
PROBE = 2.0  # how long a failing liveness probe waits


@dataclass
class Served:
    """An engine whose serve() loop runs in a daemon thread."""

    engine: Engine
    thread: threading.Thread
    outcome: list[BaseException] = field(default_factory=list)


@pytest.fixture
def served() -> Iterator[Served]:
    """Engine.serve() in a non-main daemon thread; stopped (bounded) at teardown."""
    engine = Engine()
    result = Served(engine, threading.Thread())

    def run() -> None:
        try:
            engine.serve()
        except BaseException as e:  # EngineShutdown, or what killed the loop
            result.outcome.append(e)

    result.thread = threading.Thread(target=run, name="test-engine", daemon=True)
    result.thread.start()
    yield result
    engine.stop()
    result.thread.join(WAIT)


def call(engine: Engine, action: Callable[[], Any], timeout: float = WAIT) -> tuple[Any, Any]:
    """Submit ``action`` to a serving engine and wait (bounded) for ``(value, error)``."""
    done = threading.Event()
    box: list[tuple[Any, Any]] = []

    def finish(value: Any, error: Any) -> None:
        box.append((value, error))
        done.set()

    engine.submit("test", action, finish)
    assert done.wait(timeout), "job did not finish in time"
    return box[0]


def probe(engine: Engine) -> bool:
    """True if the engine still runs a freshly submitted job."""
    ran = threading.Event()
    engine.submit("probe", ran.set, lambda value, error: None)
    return ran.wait(PROBE)


def captured_engine() -> tuple[Engine, io.StringIO, io.StringIO]:
    """An engine with CapturedStream stdout/stderr (StringIO fallbacks), bound as out/err."""
    out_fallback, err_fallback = io.StringIO(), io.StringIO()
    out = CapturedStream("stdout", out_fallback)
    err = CapturedStream("stderr", err_fallback)
    engine = Engine(streams=(out, err))
    engine.push({"out": out, "err": err})
    return engine, out_fallback, err_fallback


def tb_text(record: CommandRecord) -> str:
    """The error record's traceback as one string."""
    assert record.error is not None
    return "".join(record.error["traceback"])


def main_function(source: str, captured: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The function ``f`` defined by ``source`` in a module named __main__."""
    scope: dict[str, Any] = {"__name__": "__main__", **(captured or {})}
    exec(source, scope)
    assert scope["f"].__module__ == "__main__"
    return scope["f"]


# -- numbering and history ----------------------------------------------------------


def test_commands_are_numbered_from_one() -> None:
    """Each execute gets the next number, and commands_run counts them."""
    engine = Engine()
    assert [engine.execute(s).number for s in ("a = 1", "b = 2", "a + b")] == [1, 2, 3]
    assert engine.commands_run == 3


def test_numbering_continues_after_errors() -> None:
    """Failing commands take a number like any other."""
    engine = Engine()
    engine.execute("1/0")
    engine.execute("a = (")
    assert engine.execute("1").number == 3


def test_result_lookups() -> None:
    """result() is the last command, result(n) command n, result(-k) the k-th from the end."""
    engine = Engine()
    first, second = engine.execute("a = 1"), engine.execute("a + 1")
    assert engine.result() is second
    assert engine.result(1) is first
    assert engine.result(-1) is second
    assert engine.result(-2) is first
    assert engine.result(2).source == "a + 1"


def test_result_before_any_command() -> None:
    """result() on a fresh engine raises LookupError saying nothing has run."""
    with pytest.raises(LookupError, match="no command has run on this kernel yet"):
        Engine().result()


def test_result_of_unknown_number() -> None:
    """result(n) for a number not held raises LookupError stating the range held."""
    engine = Engine()
    engine.execute("1")
    engine.execute("2")
    with pytest.raises(LookupError, match=r"no command 7 in the history \(it holds 1 to 2\)"):
        engine.result(7)


def test_history_is_bounded() -> None:
    """With history_length=2 the oldest records are dropped and lookups say so."""
    engine = Engine(history_length=2)
    for i in range(4):
        engine.execute(str(i))
    assert list(engine.history) == [3, 4]
    with pytest.raises(LookupError, match="holds 3 to 4"):
        engine.result(1)


def test_sources_leave_linecache_with_the_history() -> None:
    """linecache holds the sources of the commands in the history, and no others."""
    engine = Engine(history_length=3)
    for i in range(10):
        engine.execute(f"value = {i}")
    for number in range(1, 11):
        entry = linecache.cache.get(f"<ipk-input-{number}>")
        if number <= 7:
            assert entry is None
        else:
            assert entry is not None and entry[2] == [f"value = {number - 1}"]


def test_a_file_run_again_keeps_its_newest_source(tmp_path) -> None:
    """Dropping an old run of a file from the history keeps a newer run's source."""
    engine = Engine(history_length=2)
    path = str(tmp_path / "job.py")
    engine.execute("first = 1", filename=path)
    engine.execute("second = 2", filename=path)
    engine.execute("other = 3")
    assert linecache.cache[path][2] == ["second = 2"]
    engine.execute("more = 4")
    assert path not in linecache.cache


def test_record_contents_and_timings() -> None:
    """A record keeps its source and ordered timings, and to_dict is JSON-ready data."""
    engine = Engine()
    record = engine.execute("x = 41\nx + 1")
    assert record.source == "x = 41\nx + 1"
    assert record.submitted <= record.started <= record.completed
    data = record.to_dict()
    assert data["number"] == 1 and data["result"]["text/plain"] == "42"
    assert data["error"] is None


# -- results and capture --------------------------------------------------------------


def test_trailing_expression_is_display_data() -> None:
    """A trailing expression's value becomes text/plain display data."""
    engine = Engine()
    assert engine.execute("a = 5; a * 2").result["text/plain"] == "10"  # type: ignore[index]
    assert engine.execute("'x' * 3").result["text/plain"] == "'xxx'"  # type: ignore[index]


def test_no_result_for_statements_or_none() -> None:
    """Statements, and an expression whose value is None, produce no result."""
    engine = Engine()
    assert engine.execute("a = 5").result is None
    assert engine.execute("None").result is None
    assert engine.execute("").result is None


def test_rich_display_data() -> None:
    """A value with _repr_html_ gets text/html alongside text/plain."""
    engine = Engine()
    engine.execute("class H:\n    def _repr_html_(self):\n        return '<b>hi</b>'\n")
    result = engine.execute("H()").result
    assert result is not None
    assert result["text/html"] == "<b>hi</b>" and "text/plain" in result


def test_stdout_and_stderr_are_captured_per_command() -> None:
    """What a command writes to the captured streams lands in its own record only."""
    engine, out_fallback, err_fallback = captured_engine()
    first = engine.execute("print('hello', file=out); print('oops', file=err)")
    second = engine.execute("print('again', file=out)")
    assert (first.stdout, first.stderr) == ("hello\n", "oops\n")
    assert (second.stdout, second.stderr) == ("again\n", "")
    assert out_fallback.getvalue() == "" and err_fallback.getvalue() == ""


def test_output_of_failing_command_is_kept() -> None:
    """Output written before an exception is still in the failing command's record."""
    engine, _, _ = captured_engine()
    record = engine.execute("print('before', file=out)\n1/0")
    assert record.stdout == "before\n"
    assert record.error is not None


def test_output_from_threads_the_command_starts_is_captured() -> None:
    """Writes from a thread the command starts and joins belong to that command."""
    engine, _, _ = captured_engine()
    source = (
        "import threading\n"
        "t = threading.Thread(target=lambda: print('from thread', file=out))\n"
        "t.start(); t.join()"
    )
    assert engine.execute(source).stdout == "from thread\n"


def test_writes_between_commands_go_to_the_fallback() -> None:
    """Outside a command, writes pass through to the fallback stream."""
    engine, out_fallback, _ = captured_engine()
    engine.execute("pass")
    engine.namespace["out"].write("between\n")
    assert out_fallback.getvalue() == "between\n"
    assert engine.execute("pass").stdout == ""


# -- errors ---------------------------------------------------------------------------


def test_error_record_names_input_and_line() -> None:
    """A runtime error records ename, evalue and a traceback naming <ipk-input-N> and the line."""
    engine = Engine()
    engine.execute("pass")
    record = engine.execute("x = 1\ny = x / 0\n")
    assert record.error is not None
    assert record.error["ename"] == "ZeroDivisionError"
    assert record.error["evalue"] == "division by zero"
    text = tb_text(record)
    assert 'File "<ipk-input-2>", line 2' in text
    assert "y = x / 0" in text
    assert "engine.py" not in text
    assert record.result is None


def test_error_in_trailing_expression() -> None:
    """An error in the trailing expression is recorded with its line, too."""
    engine = Engine()
    record = engine.execute("a = [1]\na[5]")
    text = tb_text(record)
    assert record.error["ename"] == "IndexError"  # type: ignore[index]
    assert 'File "<ipk-input-1>", line 2' in text and "a[5]" in text


def test_traceback_spans_earlier_commands() -> None:
    """A function defined in command 1 and failing in command 2 shows both inputs' lines."""
    engine = Engine()
    engine.execute("def f():\n    raise ValueError('bad value')\n")
    text = tb_text(engine.execute("f()"))
    assert "<ipk-input-1>" in text and "raise ValueError('bad value')" in text
    assert "<ipk-input-2>" in text and "f()" in text
    assert text.rstrip().endswith("ValueError: bad value")


def test_syntax_error_record() -> None:
    """A SyntaxError is recorded with the input name and the offending source."""
    engine = Engine()
    record = engine.execute("a = (1,\nb = 2 +")
    assert record.error is not None
    assert record.error["ename"] == "SyntaxError"
    text = tb_text(record)
    assert "<ipk-input-1>" in text
    assert "engine.py" not in text and "Traceback" not in text


def test_system_exit_is_recorded() -> None:
    """sys.exit() in user code is recorded as an error, not raised."""
    record = Engine().execute("import sys\nsys.exit(3)")
    assert record.error is not None and record.error["ename"] == "SystemExit"


def test_base_exception_subclass_is_recorded() -> None:
    """A BaseException subclass such as asyncio.CancelledError is recorded, not raised."""
    record = Engine().execute("import asyncio\nraise asyncio.CancelledError('stop')")
    assert record.error is not None and record.error["ename"] == "CancelledError"


def test_run_job_records_action_errors() -> None:
    """run_job hands a failing action's error record to done, without engine frames."""
    engine = Engine()
    seen: list[tuple[Any, Any]] = []

    def action() -> None:
        raise ValueError("boom")

    engine.run_job(Job("x", action, lambda value, error: seen.append((value, error))))
    [(value, error)] = seen
    assert value is None
    assert (error["ename"], error["evalue"]) == ("ValueError", "boom")
    assert "run_job" not in "".join(error["traceback"])
    assert not engine.busy


# -- namespace operations -----------------------------------------------------------


def test_push_binds_and_returns_names() -> None:
    """push binds every name and returns them."""
    engine = Engine()
    assert engine.push({"a": 1, "b": [2]}) == ["a", "b"]
    assert engine.execute("a + b[0]").result["text/plain"] == "3"  # type: ignore[index]


@pytest.mark.parametrize("bad", ["1x", "a b", "", "x-y", 3])
def test_push_is_all_or_none(bad: object) -> None:
    """One invalid name makes push raise NameError naming it and bind nothing."""
    engine = Engine()
    before = dict(engine.namespace)
    with pytest.raises(NameError, match="not valid Python names") as error:
        engine.push({"good": 1, bad: 2})  # type: ignore[dict-item]
    assert repr(bad) in str(error.value)
    assert engine.namespace == before


def test_pull_values_in_order() -> None:
    """pull returns values in the order asked."""
    engine = Engine()
    engine.push({"a": 1, "b": 2})
    assert engine.pull(["b", "a", "b"]) == [2, 1, 2]


def test_pull_missing_name() -> None:
    """pull raises NameError naming the missing name."""
    engine = Engine()
    engine.push({"a": 1})
    with pytest.raises(NameError, match="name 'missing' is not defined"):
        engine.pull(["a", "missing"])


def test_delete_unbinds() -> None:
    """delete removes the names."""
    engine = Engine()
    engine.push({"a": 1, "b": 2})
    engine.delete(["a"])
    assert engine.keys() == ["b"]


def test_delete_is_all_or_none() -> None:
    """delete with one missing name raises NameError and deletes nothing."""
    engine = Engine()
    engine.push({"a": 1, "b": 2})
    with pytest.raises(NameError, match="'nope'"):
        engine.delete(["a", "nope"])
    assert engine.keys() == ["a", "b"]


def test_keys_hide_dunder_names() -> None:
    """keys lists user names, not __name__ or __builtins__."""
    engine = Engine()
    engine.execute("a = 1\n_private = 2\n__hidden__ = 3")
    assert "__builtins__" in engine.namespace
    assert engine.keys() == ["a", "_private"]


def test_namespace_given_is_used() -> None:
    """An engine shares the namespace dict it is given and names it __main__."""
    namespace: dict[str, Any] = {"seed": 7}
    engine = Engine(namespace)
    engine.execute("grown = seed * 6")
    assert namespace["grown"] == 42 and namespace["__name__"] == "__main__"


def test_apply_main_function_reads_the_namespace() -> None:
    """A __main__ function sees the kernel's names; captured names fill the gaps."""
    engine = Engine()
    engine.push({"a": 5})
    f = main_function("def f(x, *, k=3):\n    return a * x + b + k\n", {"a": 1000, "b": 10})
    assert engine.apply(f, (2,), {}) == 5 * 2 + 10 + 3
    assert engine.apply(f, (2,), {"k": 0}) == 20


def test_apply_main_lambda_and_closure() -> None:
    """A __main__ lambda, and a closure, run against the kernel namespace."""
    engine = Engine()
    engine.push({"a": 7})
    f = main_function("def make(n):\n    return lambda: a + n\nf = make(1)\n")
    assert engine.apply(f, (), {}) == 8


def test_apply_main_function_global_assignment_lands_in_namespace() -> None:
    """A __main__ function that assigns a global binds it in the kernel namespace."""
    engine = Engine()
    f = main_function("def f(value):\n    global shared\n    shared = value\n")
    engine.apply(f, (42,), {})
    assert engine.namespace.get("shared") == 42


def test_apply_other_functions_keep_their_globals() -> None:
    """A function from a real module keeps its own globals."""
    engine = Engine()
    engine.push({"len": lambda x: -1})
    assert engine.apply(len, ([1, 2],), {}) == 2
    f = main_function("def f():\n    return a\n", {"a": "captured"})
    f.__module__ = "library"
    engine.push({"a": "kernel"})
    assert engine.apply(f, (), {}) == "captured"


def test_reset_empties_namespace_but_keeps_history() -> None:
    """reset clears user names; history and numbering continue."""
    engine = Engine()
    engine.execute("a = 1")
    engine.push({"b": 2})
    engine.reset()
    assert engine.keys() == []
    assert engine.namespace["__name__"] == "__main__"
    record = engine.execute("'a' in dir()")
    assert record.number == 2 and record.result["text/plain"] == "False"  # type: ignore[index]
    assert engine.result(1).source == "a = 1"


# -- the queue and its thread --------------------------------------------------------


def test_fifo_order_of_1000_mixed_jobs(served: Served) -> None:
    """1000 executes, pushes, pulls and applies submitted from another thread run in order."""
    engine = served.engine
    engine.push({"log": []})
    order: list[int] = []
    pulled: dict[int, Any] = {}
    last = threading.Event()

    def action_for(i: int) -> Callable[[], Any]:
        def run_execute() -> Any:
            return engine.execute(f"log.append({i})")

        def run_push() -> Any:
            return engine.push({"v": i})

        def run_pull() -> None:
            pulled[i] = engine.pull(["v"])[0]

        def run_apply() -> Any:
            return engine.apply(lambda: engine.namespace["log"].append(i), (), {})

        return (run_execute, run_push, run_pull, run_apply)[i % 4]

    def submit_all() -> None:
        for i in range(1000):

            def done(value: Any, error: Any, i: int = i) -> None:
                order.append(i if error is None else -i)
                if i == 999:
                    last.set()

            engine.submit(f"kind{i % 4}", action_for(i), done)

    submitter = threading.Thread(target=submit_all)
    submitter.start()
    submitter.join(WAIT)
    assert last.wait(WAIT)
    assert order == list(range(1000))
    assert engine.namespace["log"] == [i for i in range(1000) if i % 4 in (0, 3)]
    assert all(pulled[i] == i - 1 for i in range(2, 1000, 4))


def test_abort_drops_queued_jobs(served: Served) -> None:
    """abort() returns queued jobs oldest first and they never run; the running one finishes."""
    engine = served.engine
    started, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        started.set()
        gate.wait(WAIT)
        ran.append("blocker")

    engine.submit("blocker", blocker, lambda value, error: None)
    assert started.wait(WAIT)
    assert engine.busy
    for i in range(5):
        engine.submit(f"queued{i}", lambda i=i: ran.append(f"queued{i}"), lambda v, e: None)
    assert engine.queued == 5
    dropped = engine.abort()
    assert [job.kind for job in dropped] == [f"queued{i}" for i in range(5)]
    assert engine.queued == 0
    gate.set()
    call(engine, lambda: ran.append("after"))
    assert ran == ["blocker", "after"]


def test_interrupt_when_idle_is_false() -> None:
    """interrupt() with nothing running does nothing and says so."""
    engine = Engine()
    assert engine.interrupt() is False


def test_interrupt_before_the_job_starts_stops_it() -> None:
    """An interrupt that arrives while the job sent before it waits fails that job as it
    starts, without running it; the job after it runs."""
    engine = Engine()
    ran: list[str] = []
    outcomes: list[Any] = []
    engine.submit("first", lambda: ran.append("first"), lambda v, e: outcomes.append(e))
    assert engine.interrupt() is True
    engine.submit("second", lambda: ran.append("second"), lambda v, e: outcomes.append(e))
    engine.run_next()
    engine.run_next()
    assert ran == ["second"]
    assert outcomes[0]["ename"] == "KeyboardInterrupt" and outcomes[1] is None
    assert engine.interrupt() is False


def test_aborted_target_takes_its_interrupt_along() -> None:
    """abort() of a job an interrupt was waiting for leaves later jobs uninterrupted."""
    engine = Engine()
    engine.submit("doomed", lambda: None, lambda v, e: None)
    assert engine.interrupt() is True
    assert len(engine.abort()) == 1
    outcomes: list[Any] = []
    engine.submit("later", lambda: 1, lambda v, e: outcomes.append((v, e)))
    engine.run_next()
    assert outcomes == [(1, None)]


def test_interrupted_execute_before_start_is_an_error_without_a_number() -> None:
    """An execute interrupted before it started fails with KeyboardInterrupt and takes
    no command number."""
    engine = Engine()
    outcomes: list[Any] = []
    engine.submit("execute", lambda: engine.execute("ran = True"), lambda v, e: outcomes.append(e))
    assert engine.interrupt()
    engine.run_next()
    assert outcomes[0]["ename"] == "KeyboardInterrupt"
    assert "ran" not in engine.namespace
    assert engine.execute("1").number == 1


def test_interrupt_running_execute(served: Served) -> None:
    """interrupt() stops `while True: pass` with a KeyboardInterrupt record; serving goes on."""
    engine = served.engine
    started = threading.Event()
    engine.push({"started": started})
    done = threading.Event()
    box: list[Any] = []
    engine.submit(
        "execute",
        lambda: engine.execute("started.set()\nwhile True: pass"),
        lambda value, error: (box.append((value, error)), done.set()),
    )
    assert started.wait(WAIT)
    assert engine.interrupt() is True
    assert done.wait(WAIT)
    [(record, error)] = box
    assert error is None
    assert record.error["ename"] == "KeyboardInterrupt"
    assert "<ipk-input-1>" in tb_text(record)
    value, error = call(engine, lambda: engine.execute("6 * 7"))
    assert value.result["text/plain"] == "42" and value.number == 2
    assert served.thread.is_alive() and served.outcome == []


def test_interrupt_running_plain_job(served: Served) -> None:
    """interrupt() of a busy non-execute job hands done a KeyboardInterrupt error record."""
    engine = served.engine
    started = threading.Event()

    def spin() -> None:
        started.set()
        while True:
            pass

    done = threading.Event()
    box: list[Any] = []
    engine.submit("spin", spin, lambda value, error: (box.append(error), done.set()))
    assert started.wait(WAIT)
    assert engine.interrupt()
    assert done.wait(WAIT)
    assert box[0]["ename"] == "KeyboardInterrupt"
    assert probe(engine)


def test_interrupts_racing_job_ends_never_kill_the_engine(served: Served) -> None:
    """Interrupts fired non-stop while short jobs come and go only ever hit a job."""
    engine = served.engine
    outcomes: list[Any] = []
    all_done = threading.Event()
    count = 2000

    def record(value: Any, error: Any) -> None:
        outcomes.append(error)
        if len(outcomes) == count:
            all_done.set()

    stop = threading.Event()

    def keep_interrupting() -> None:
        while not stop.is_set():
            engine.interrupt()

    interrupter = threading.Thread(target=keep_interrupting)
    interrupter.start()
    try:
        for i in range(count):
            engine.submit("short", lambda i=i: sum(range(i % 50)), record)
        assert all_done.wait(WAIT * 3)
    finally:
        stop.set()
        interrupter.join(WAIT)
    assert all(e is None or e["ename"] == "KeyboardInterrupt" for e in outcomes)
    assert probe(engine), f"engine stopped serving: {served.outcome!r}"
    assert served.outcome == []


def test_user_base_exception_does_not_kill_serve(served: Served) -> None:
    """A command raising a BaseException subclass leaves the engine serving."""
    engine = served.engine
    engine.submit(
        "execute",
        lambda: engine.execute("import asyncio\nraise asyncio.CancelledError()"),
        lambda value, error: None,
    )
    assert probe(engine), f"engine stopped serving: {served.outcome!r}"


def test_stop_raises_engine_shutdown_after_queued_jobs(served: Served) -> None:
    """stop() queues behind earlier jobs; serve() then raises EngineShutdown."""
    engine = served.engine
    ran = threading.Event()
    engine.submit("before", ran.set, lambda value, error: None)
    engine.stop()
    served.thread.join(WAIT)
    assert ran.is_set()
    assert not served.thread.is_alive()
    assert len(served.outcome) == 1 and isinstance(served.outcome[0], EngineShutdown)
    assert not engine.busy


def test_engine_shutdown_is_not_an_exception() -> None:
    """EngineShutdown escapes `except Exception` handlers in user-facing code."""
    assert issubclass(EngineShutdown, BaseException)
    assert not issubclass(EngineShutdown, Exception)


def test_the_same_source_run_again_is_its_own_command() -> None:
    """A source run again (its code reused) reports its own command in tracebacks, and
    the functions it defines point at that command's source."""
    engine = Engine()
    source = "def f():\n    return 1 / 0\nf()"
    first, second = engine.execute(source), engine.execute(source)
    assert first.error is not None and second.error is not None
    assert f"<ipk-input-{first.number}>" in "".join(first.error["traceback"])
    assert f"<ipk-input-{second.number}>" in "".join(second.error["traceback"])
    code = engine.namespace["f"].__code__
    assert code.co_filename == f"<ipk-input-{second.number}>"
    assert inspect.getsource(engine.namespace["f"]).startswith("def f():")


# -- IPython syntax -----------------------------------------------------------------


@pytest.fixture
def kernel_engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine with captured streams (StringIO fallbacks), for ``run``.

    A real IPython shell another test left in this process is hidden meanwhile: the
    kernel never replaces one, and it would receive the display calls instead.
    """
    monkeypatch.setattr(InteractiveShell, "_instance", None)
    return Engine(
        streams=(CapturedStream("stdout", io.StringIO()), CapturedStream("stderr", io.StringIO()))
    )


def run(engine: Engine, source: str) -> CommandRecord:
    """``engine.execute(source)`` with its captured streams as sys.stdout and sys.stderr,
    as in a kernel: magics and !commands print there."""
    assert engine.streams is not None
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = engine.streams
    try:
        return engine.execute(source)
    finally:
        sys.stdout, sys.stderr = saved


def test_plain_python_makes_no_shell(kernel_engine: Engine) -> None:
    """Plain Python, a syntax error without IPython's marks and a non-number result
    leave the engine without an IPython shell, and without get_ipython."""
    for source in ("a = 1", "print(a)", "a + 1", "x = (", "[a, 2]"):
        run(kernel_engine, source)
    assert kernel_engine.rich.interactive is None
    assert "get_ipython" not in kernel_engine.namespace
    assert run(kernel_engine, "get_ipython").error["ename"] == "NameError"


def test_magics_see_the_engine_namespace(kernel_engine: Engine) -> None:
    """%who and %whos list the engine's names (not IPython's); the shell is the
    engine's, bound as get_ipython."""
    run(kernel_engine, "def f(x):\n    return x * 2\nlimit = 3")
    assert run(kernel_engine, "%who").stdout.split() == ["f", "limit"]
    whos = run(kernel_engine, "%whos").stdout
    assert "limit      int         3" in whos and "function" in whos
    shell = kernel_engine.rich.interactive
    assert shell is not None and shell.user_ns is kernel_engine.namespace
    assert kernel_engine.namespace["get_ipython"]() is shell
    assert kernel_engine.keys() == ["f", "limit"]


def test_timeit_line_and_cell_magics(kernel_engine: Engine) -> None:
    """%timeit and %%timeit time the engine's functions and print to the command's stdout."""
    run(kernel_engine, "def f(x):\n    return x * 2")
    line = run(kernel_engine, "%timeit -n 3 -r 2 f(3)")
    cell = run(kernel_engine, "%%timeit -n 2 -r 1\ny = f(4)\nf(y)")
    assert (
        line.error is None and "per loop (mean ± std. dev. of 2 runs, 3 loops each)" in line.stdout
    )
    assert cell.error is None and "of 1 run, 2 loops each" in cell.stdout
    result = run(kernel_engine, "%timeit -o -q -n 1 -r 1 f(5)").result
    assert result is not None and result["text/plain"].startswith("<TimeitResult")


def test_time_prints_timings_and_returns_the_value(kernel_engine: Engine) -> None:
    """%time EXPR prints CPU and wall time and its value is the command's result."""
    record = run(kernel_engine, "%time 6 * 7")
    assert "Wall time" in record.stdout
    assert record.result == {"text/plain": "42"}


def test_shell_commands_print_to_the_command_stdout(kernel_engine: Engine) -> None:
    """!cmd output is the command's stdout; x = !cmd binds its lines; $name expands."""
    run(kernel_engine, "word = 'there'")
    record = run(kernel_engine, "!echo hi $word")
    assert record.error is None
    assert record.stdout.splitlines() == ["hi there"]
    run(kernel_engine, "lines = !printf 'a\\nb\\n'")
    assert list(kernel_engine.pull(["lines"])[0]) == ["a", "b"]


def test_env_magic_reads_and_sets_the_environment(
    kernel_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """%env NAME=VALUE sets a variable in the kernel's environment; %env NAME reads it."""
    monkeypatch.delenv("IPK_SYNTAX_TEST", raising=False)
    run(kernel_engine, "%env IPK_SYNTAX_TEST=on")
    assert os.environ["IPK_SYNTAX_TEST"] == "on"
    assert run(kernel_engine, "%env IPK_SYNTAX_TEST").result == {"text/plain": "'on'"}


def test_help_suffix_prints_the_docstring(kernel_engine: Engine) -> None:
    """obj? prints what IPython's inspector says about the engine's object."""
    run(kernel_engine, 'def scale(x):\n    "Twice x."\n    return x * 2')
    record = run(kernel_engine, "scale?")
    assert record.error is None
    assert "Twice x." in record.stdout and "function" in record.stdout


def test_unknown_magic_is_a_usage_error(kernel_engine: Engine) -> None:
    """A magic that does not exist is a UsageError with its message alone, and the
    engine goes on."""
    record = run(kernel_engine, "%nosuchmagic 1")
    assert record.error is not None
    assert record.error["ename"] == "UsageError"
    assert record.error["traceback"] == [
        "UsageError: Line magic function `%nosuchmagic` not found.\n"
    ]
    assert run(kernel_engine, "1 + 1").result == {"text/plain": "2"}


def test_magics_inside_python_blocks_keep_line_numbers(kernel_engine: Engine) -> None:
    """A magic inside a loop runs each time, and a later error names its own line."""
    record = run(kernel_engine, "for i in range(2):\n    %time i\n1 / 0")
    assert record.stdout.count("Wall time") == 2
    assert f'"<ipk-input-{record.number}>", line 3' in tb_text(record)


def test_syntax_error_beside_a_magic_names_its_line(kernel_engine: Engine) -> None:
    """A SyntaxError in IPython syntax is reported once, at the line that has it."""
    record = run(kernel_engine, "%who\nfor i in range(2)\n    pass")
    assert record.error is not None and record.error["ename"] == "SyntaxError"
    text = tb_text(record)
    assert "line 2" in text and "for i in range(2)" in text
    assert "During handling" not in text


def test_code_calling_get_ipython_gets_the_shell(kernel_engine: Engine) -> None:
    """Python already transformed by a client's IPython (as %autopx sends it) runs."""
    run(kernel_engine, "a = 1")
    record = run(kernel_engine, "get_ipython().run_line_magic('who', '')")
    assert record.error is None and record.stdout.split() == ["a"]


def test_reset_keeps_the_shell_names(kernel_engine: Engine) -> None:
    """After reset(), magics still run and see the emptied namespace."""
    run(kernel_engine, "a = 1\n%who")
    kernel_engine.reset()
    assert kernel_engine.keys() == []
    assert run(kernel_engine, "%who").stdout == "Interactive namespace is empty.\n"


def test_display_reaches_the_command_after_a_magic(kernel_engine: Engine) -> None:
    """display() in the command that first needs the shell, and in later ones, is recorded."""
    first = run(
        kernel_engine,
        "from IPython.display import HTML, display\ndisplay(HTML('<b>1</b>'))\n"
        "%who\ndisplay(HTML('<b>2</b>'))",
    )
    later = run(kernel_engine, "display(HTML('<b>3</b>'))")
    assert [d["text/html"] for d in first.displays] == ["<b>1</b>", "<b>2</b>"]
    assert [d["text/html"] for d in later.displays] == ["<b>3</b>"]
    assert InteractiveShell._instance is None  # detached between commands


def test_interrupt_reaches_code_timed_by_timeit(served: Served) -> None:
    """interrupt() stops a long %timeit loop with a KeyboardInterrupt record; serving goes on."""
    engine = served.engine
    started = threading.Event()
    engine.push({"started": started})
    done = threading.Event()
    box: list[Any] = []
    engine.submit(
        "execute",
        lambda: engine.execute("%timeit -n 1000000000000 -r 1 started.set()"),
        lambda value, error: (box.append(value), done.set()),
    )
    assert started.wait(WAIT)
    assert engine.interrupt() is True
    assert done.wait(WAIT)
    assert box[0].error["ename"] == "KeyboardInterrupt"
    value, _ = call(engine, lambda: engine.execute("6 * 7"))
    assert value.result == {"text/plain": "42"}
