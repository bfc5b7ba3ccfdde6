"""``after_import``: a function run right after a module has executed, the first time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ipython_parallel_kernel.kernel.importhook import after_import


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path holding a fresh module ``ipk_hooked``."""
    (tmp_path / "ipk_hooked.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ipk_hooked", raising=False)
    return tmp_path


def test_every_waiting_function_runs_once_after_the_module_executed(module_dir):
    """Several waiting for one module (one per engine) are each called once, with the
    executed module, and then stop waiting; the module keeps its real loader."""
    seen: list[tuple[int, int]] = []
    finders = [
        after_import("ipk_hooked", lambda m, i=i: seen.append((i, m.VALUE))) for i in (1, 2, 3)
    ]
    try:
        import ipk_hooked  # type: ignore[import-not-found]

        assert sorted(seen) == [(1, 42), (2, 42), (3, 42)]
        assert not any(finder in sys.meta_path for finder in finders)
        assert type(ipk_hooked.__loader__).__name__ == "SourceFileLoader"
    finally:
        for finder in finders:
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
