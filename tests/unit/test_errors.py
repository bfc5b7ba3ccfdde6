"""Unit tests for the exception tree and RemoteError's rendering."""

from __future__ import annotations

import importlib

import pytest

import ipython_parallel_kernel
from ipython_parallel_kernel import errors
from ipython_parallel_kernel.errors import (
    ClusterRunning,
    CompositeError,
    ConnectionFailed,
    ConnectionRefused,
    DependencyError,
    DependencyTimeout,
    FrameTooLarge,
    GuiUnavailable,
    ImpossibleDependency,
    InvalidSignature,
    KernelDied,
    KernelError,
    KernelTimeout,
    KeyNotFound,
    LaunchError,
    LaunchTimeout,
    MalformedFrame,
    NoKernels,
    RemoteError,
    ReplayedMessage,
    TaskAborted,
    UnmetDependency,
    UnsignedMessage,
    WireError,
)

TRACEBACK = [
    "Traceback (most recent call last):\n",
    '  File "<ipk-input-3>", line 1, in <module>\n    1/0\n',
    "ZeroDivisionError: division by zero\n",
]

TREE = [
    (WireError, KernelError),
    (FrameTooLarge, WireError),
    (MalformedFrame, WireError),
    (UnsignedMessage, WireError),
    (InvalidSignature, WireError),
    (ReplayedMessage, WireError),
    (ConnectionFailed, KernelError),
    (KeyNotFound, ConnectionFailed),
    (ConnectionRefused, ConnectionFailed),
    (KernelDied, ConnectionFailed),
    (NoKernels, KernelDied),
    (KernelTimeout, KernelError),
    (RemoteError, KernelError),
    (CompositeError, RemoteError),
    (DependencyError, KernelError),
    (UnmetDependency, DependencyError),
    (ImpossibleDependency, UnmetDependency),
    (LaunchError, KernelError),
    (LaunchTimeout, LaunchError),
    (ClusterRunning, LaunchError),
    (GuiUnavailable, KernelError),
    (TaskAborted, KernelError),
    (DependencyTimeout, ImpossibleDependency),
]


def remote_error(kernel: str = "kernel-0") -> RemoteError:
    """A RemoteError as a client builds it from a kernel's error record."""
    record = {"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": TRACEBACK}
    return RemoteError.from_error(record, kernel=kernel, number=3)


@pytest.mark.parametrize(("child", "parent"), TREE)
def test_tree_as_drawn(child: type, parent: type) -> None:
    """Each exception derives from the parent the module docstring draws."""
    assert issubclass(child, parent)
    assert child.__name__ in errors.__doc__  # type: ignore[operator]


def test_layers_are_separate() -> None:
    """Wire errors are not connection failures and vice versa; all are KernelErrors."""
    assert not issubclass(WireError, ConnectionFailed)
    assert not issubclass(ConnectionFailed, WireError)
    assert not issubclass(RemoteError, (WireError, ConnectionFailed, KernelTimeout))
    assert issubclass(KernelError, Exception)


def test_kernel_timeout_is_a_timeout_error() -> None:
    """KernelTimeout can be caught as the builtin TimeoutError."""
    assert issubclass(KernelTimeout, TimeoutError)
    with pytest.raises(TimeoutError):
        raise KernelTimeout("too slow")


def test_errors_all_is_complete() -> None:
    """errors.__all__ names exactly the exception classes the module defines."""
    defined = {
        n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)
    }
    assert set(errors.__all__) == defined
    assert len(TREE) + 1 == len(errors.__all__)


def test_remote_error_fields() -> None:
    """from_error keeps name, value, traceback, kernel and command number."""
    error = remote_error()
    assert (error.ename, error.evalue, error.traceback) == (
        "ZeroDivisionError",
        "division by zero",
        TRACEBACK,
    )
    assert (error.kernel, error.number) == ("kernel-0", 3)


def test_remote_error_str_has_traceback_and_kernel() -> None:
    """str() starts with 'ename: evalue' and includes the kernel name and remote traceback."""
    text = str(remote_error())
    assert text.startswith("ZeroDivisionError: division by zero")
    assert "Remote traceback:" in text
    assert "[kernel-0]" in text
    assert '<ipk-input-3>", line 1' in text and "1/0" in text


def test_render_traceback_lines() -> None:
    """_render_traceback_ gives the remote traceback as lines, headed by the kernel."""
    lines = remote_error()._render_traceback_()
    assert lines[0] == "[kernel-0] Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert any("<ipk-input-3>" in line for line in lines)


def test_render_without_kernel_name() -> None:
    """Without a kernel name there is no bracketed header."""
    assert remote_error(kernel="").render_traceback().startswith("Traceback")


def test_remote_error_can_be_raised_and_caught_as_kernel_error() -> None:
    """RemoteError is catchable as KernelError with its fields intact."""
    with pytest.raises(KernelError) as info:
        raise remote_error()
    assert info.value.ename == "ZeroDivisionError"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ipython_parallel_kernel.__all__)
def test_package_all_names_exist(name: str) -> None:
    """Every name in the package's __all__ resolves (lazily where it is lazy)."""
    assert getattr(ipython_parallel_kernel, name) is not None


def test_package_lazy_remote_error_is_the_errors_class() -> None:
    """The package's RemoteError is errors.RemoteError, and unknown names raise AttributeError."""
    assert ipython_parallel_kernel.RemoteError is RemoteError
    with pytest.raises(AttributeError, match="no_such_name"):
        ipython_parallel_kernel.no_such_name  # noqa: B018
    assert sorted(ipython_parallel_kernel.__all__) == dir(
        importlib.import_module("ipython_parallel_kernel")
    )


def test_composite_error_lists_each_kernel() -> None:
    """CompositeError names target, verb and address; shows the first few in full."""
    failures = [
        (i, f"127.0.0.1:{9000 + i}", remote_error(f"127.0.0.1:{9000 + i}")) for i in range(5)
    ]
    error = CompositeError("execute", failures, [None] * 6)
    text = error.render_traceback()
    assert "[0:execute] 127.0.0.1:9000" in text and "[4:execute] 127.0.0.1:9004" in text
    assert "... and 2 more:" in text
    assert text.count("Traceback") == CompositeError.SHOWN_IN_FULL
    assert error._render_traceback_() == text.splitlines()


def test_composite_error_str_names_the_failed_kernels() -> None:
    """str() names each failed kernel's target and address, the first few, then how many more."""
    failures = [
        (i, f"127.0.0.1:{9000 + i}", remote_error(f"127.0.0.1:{9000 + i}")) for i in range(5)
    ]
    text = str(CompositeError("execute", failures, [None] * 6))
    assert text.startswith("execute failed on 5 of 6 kernels: ")
    assert "\n" not in text
    for target in range(CompositeError.SHOWN_IN_FULL):
        assert f"[{target}:execute] 127.0.0.1:{9000 + target}: ZeroDivisionError" in text
    assert "127.0.0.1:9003" not in text and text.endswith("... and 2 more")
    died = KernelDied("lost kernel 127.0.0.1:9001: it closed the connection")
    one = CompositeError("pull", [(1, "127.0.0.1:9001", died)], [0, died])
    assert str(one) == (
        "pull failed on 1 of 2 kernels: [1:pull] 127.0.0.1:9001: KernelDied: "
        "lost kernel 127.0.0.1:9001: it closed the connection"
    )


def test_composite_error_reraises_one() -> None:
    """raise_exception(i) raises the i-th failure by itself."""
    first, second = remote_error("a"), KernelDied("lost kernel b")
    error = CompositeError("pull", [(1, "a", first), (3, "b", second)], [0, first, 2, second])
    with pytest.raises(KernelDied):
        error.raise_exception(1)
    with pytest.raises(RemoteError):
        error.raise_exception()


def test_dependency_errors_are_their_own_layer() -> None:
    """Dependency errors are neither remote errors nor lost kernels; catching
    UnmetDependency catches ImpossibleDependency, as in ipyparallel, not the reverse."""
    assert not issubclass(DependencyError, (RemoteError, ConnectionFailed, KernelTimeout))
    with pytest.raises(UnmetDependency):
        raise ImpossibleDependency("task 3 depends on task 1, which failed")
    assert not issubclass(UnmetDependency, ImpossibleDependency)


def test_composite_error_is_a_remote_error_that_renders_every_failure() -> None:
    """A CompositeError caught as a RemoteError has the ename, evalue and traceback a
    RemoteError handler reads: its summary and its whole rendering."""
    failures = [(0, "127.0.0.1:9000", remote_error("127.0.0.1:9000"))]
    with pytest.raises(RemoteError) as info:
        raise CompositeError("apply", failures, [None, 1])
    error = info.value
    assert error.ename == "CompositeError"
    summary = "apply failed on 1 of 2 kernels: [0:apply] 127.0.0.1:9000: ZeroDivisionError"
    assert error.evalue == str(error) == f"{summary}: division by zero"
    assert "".join(error.traceback).rstrip("\n") == error.render_traceback()


def test_ipyparallel_error_names_are_this_packages_classes() -> None:
    """ipp.error (as ipyparallel.error) names the classes the package raises."""
    from ipython_parallel_kernel import error

    assert ipython_parallel_kernel.error is error
    assert error.RemoteError is RemoteError and error.CompositeError is CompositeError
    assert error.EngineError is KernelDied and error.NoEnginesRegistered is NoKernels
    assert error.TimeoutError is TimeoutError and issubclass(KernelTimeout, error.TimeoutError)
    assert error.IPythonError is error.KernelError is KernelError
    assert error.UnmetDependency is UnmetDependency
    assert error.ImpossibleDependency is ImpossibleDependency
    assert error.DependencyError is DependencyError
    assert all(issubclass(getattr(error, name), Exception) for name in error.__all__)


def test_ipp_error_does_not_import_the_client() -> None:
    """Importing ipython_parallel_kernel.error in a fresh interpreter loads no client,
    kernel or magics module, so code on a kernel can import it."""
    import subprocess
    import sys

    code = (
        "import sys, ipython_parallel_kernel.error as e; e.RemoteError; "
        "print(sorted(m for m in sys.modules if m.startswith('ipython_parallel_kernel.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "ipython_parallel_kernel.error" in loaded
    assert not any(f"ipython_parallel_kernel.{part}" in loaded for part in ("client", "magics"))


def test_every_exception_class_of_the_package_is_in_the_tree():
    """No module defines an exception of its own: all are in errors.py, drawn in its
    docstring; only the kernel's internal EngineShutdown (it never reaches a caller)
    lives beside its engine, and the tree names it."""
    import ast
    from pathlib import Path

    package = Path(ipython_parallel_kernel.__file__).parent
    exception_names = {"Exception", "BaseException", *errors.__all__}
    elsewhere = set()
    for path in package.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & exception_names:
                    elsewhere.add(node.name)
    assert elsewhere == {"EngineShutdown"}
    for name in [*errors.__all__, "EngineShutdown"]:
        assert name in errors.__doc__, name
