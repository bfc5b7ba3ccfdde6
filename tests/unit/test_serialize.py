"""Unit tests for serialize: the picklers, with pickle-5 out-of-band buffers."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from ipython_parallel_kernel.core import serialize
from ipython_parallel_kernel.core.serialize import (
    OUT_OF_BAND_MIN,
    PICKLERS,
    dumps,
    loads,
    require_pickler,
)
from ipython_parallel_kernel.core.wire import Channel


def over_the_wire(payload: bytes, buffers: list[memoryview]) -> tuple[memoryview, list[memoryview]]:
    """Payload and buffers as a receiver gets them: through a sealed, decoded frame."""
    sender, receiver = Channel(b"k"), Channel(b"k")
    data = b"".join(
        bytes(memoryview(p).cast("B")) for p in sender.seal("t", None, payload, buffers)
    )
    [message] = receiver.decoder().feed(data)
    return memoryview(message.payload), message.buffers


def test_plain_objects_round_trip() -> None:
    """Ordinary containers come back equal, with no out-of-band buffers."""
    value = {"a": 1, "b": [1.5, "x", None], "c": (b"raw", {3})}
    payload, buffers = dumps(value)
    assert buffers == []
    assert loads(payload, buffers) == value


def test_lambda_round_trips() -> None:
    """A lambda is shipped by value and computes the same after loading."""
    payload, buffers = dumps(lambda x, y=2: x * y + 1)
    assert loads(payload, buffers)(5) == 11


def test_closure_round_trips_with_its_cells() -> None:
    """A closure keeps the values it captured."""

    def make_adder(n: int):
        def add(x: int) -> int:
            return x + n

        return add

    payload, buffers = dumps(make_adder(40))
    assert loads(payload, buffers)(2) == 42


def test_interactively_defined_class_round_trips() -> None:
    """A class defined in a function (not importable) is shipped by value."""

    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

        def double(self) -> int:
            return 2 * self.x

    payload, buffers = dumps(Point(21))
    assert loads(payload, buffers).double() == 42


def test_large_array_travels_out_of_band() -> None:
    """An array of at least OUT_OF_BAND_MIN bytes leaves the pickle stream as a buffer."""
    array = np.arange(OUT_OF_BAND_MIN // 8, dtype=np.float64)
    assert array.nbytes == OUT_OF_BAND_MIN
    payload, buffers = dumps(array)
    assert len(buffers) == 1 and buffers[0].nbytes == array.nbytes
    assert len(payload) < 1024
    assert np.array_equal(loads(payload, buffers), array)


def test_large_array_over_the_wire_is_equal_and_writable() -> None:
    """An out-of-band array rebuilt on received buffers is equal, writable and independent."""
    array = np.random.default_rng(0).random((300, 300))
    received = over_the_wire(*dumps(array))
    result = loads(*received)
    assert np.array_equal(result, array)
    assert result.flags.writeable
    result[0, 0] = -1.0
    assert array[0, 0] != -1.0


def test_fortran_ordered_large_array_round_trips() -> None:
    """A Fortran-ordered array travels out of band and keeps its layout and values."""
    array = np.asfortranarray(np.arange(200 * 100, dtype=np.int64).reshape(200, 100))
    payload, buffers = dumps(array)
    assert len(buffers) == 1
    result = loads(*over_the_wire(payload, buffers))
    assert np.array_equal(result, array)
    assert result.flags.f_contiguous


def test_small_array_stays_in_band() -> None:
    """An array under OUT_OF_BAND_MIN bytes is copied into the pickle stream."""
    array = np.arange(OUT_OF_BAND_MIN // 8 - 1, dtype=np.float64)
    payload, buffers = dumps(array)
    assert buffers == []
    assert len(payload) > array.nbytes
    assert np.array_equal(loads(payload), array)


def test_mixed_sizes_split_between_stream_and_buffers() -> None:
    """In one object, only the large arrays become buffers, in pickling order."""
    big1, small, big2 = np.ones(10_000), np.zeros(10), np.full(20_000, 3.0)
    payload, buffers = dumps({"big1": big1, "small": small, "big2": big2})
    assert [b.nbytes for b in buffers] == [big1.nbytes, big2.nbytes]
    result = loads(*over_the_wire(payload, buffers))
    assert all(
        np.array_equal(result[k], v) for k, v in (("big1", big1), ("small", small), ("big2", big2))
    )


def test_large_bytearray_round_trips() -> None:
    """A large bytearray (which supports pickle 5 buffers) round-trips intact."""
    value = bytearray(range(256)) * 1024
    result = loads(*over_the_wire(*dumps(value)))
    assert result == value


def test_each_pickler_writes_what_pickle_loads() -> None:
    """pickle, cloudpickle and dill payloads all load with plain pickle.loads; dill's
    names dill's helpers, so dill really wrote it."""
    for pickler in PICKLERS:
        payload, buffers = dumps({"a": [1, 2]}, pickler)
        assert loads(payload, buffers) == {"a": [1, 2]}
    payload, _ = dumps(lambda: 42, "dill")
    assert b"dill._dill" in payload and loads(payload)() == 42


def test_dill_ships_a_closure_over_a_lock_that_cloudpickle_cannot() -> None:
    """A function closing over a threading.Lock pickles with dill only."""
    import threading

    lock = threading.Lock()

    def locked_increment(x: int) -> int:
        with lock:
            return x + 1

    with pytest.raises(TypeError, match="lock"):
        dumps(locked_increment)
    assert loads(*dumps(locked_increment, "dill"))(1) == 2


def test_dill_pickles_only_the_globals_a_function_uses() -> None:
    """A function pickled by dill carries the globals it reads, not all of its module's."""

    def reads_a_global() -> float:
        return OUT_OF_BAND_MIN * 0.0

    shipped = loads(*dumps(reads_a_global, "dill"))
    assert "OUT_OF_BAND_MIN" in shipped.__globals__ and "dumps" not in shipped.__globals__


def test_plain_pickle_refuses_a_lambda_saying_what_ships_it() -> None:
    """Plain pickle takes functions by reference: a lambda fails with a PicklingError
    naming use_cloudpickle(); an importable function is fine."""
    with pytest.raises(pickle.PicklingError, match=r"use_cloudpickle\(\) or use_dill\(\)"):
        dumps(lambda: 1, "pickle")
    assert loads(*dumps(pow, "pickle")) is pow


def test_a_missing_dill_is_an_import_error_naming_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where dill cannot be imported, asking for it says pip install dill; an unknown
    pickler is a ValueError listing the known ones."""
    monkeypatch.setitem(sys.modules, "dill", None)
    monkeypatch.delitem(serialize._DUMPS, "dill", raising=False)
    with pytest.raises(ImportError, match="pip install dill"):
        require_pickler("dill")
    with pytest.raises(ImportError, match="pip install dill"):
        dumps(1, "dill")
    with pytest.raises(ValueError, match="pickle, cloudpickle, dill"):
        require_pickler("marshal")


def test_a_chunks_pickled_function_does_not_force_cloudpickle() -> None:
    """The __main__ inside a Chunk's pickled function is allowed for; one in its items
    is not: that payload is cloudpickle's, and both load."""
    from ipython_parallel_kernel.core.references import interactive
    from ipython_parallel_kernel.core.tasks import Chunk

    shipped, _ = serialize.dumps(interactive(lambda x: x + 1))
    chunk = Chunk(shipped, [(1,)])
    assert chunk.mentions >= 1
    plain, _ = serialize.dumps(chunk, mentions=chunk.mentions)
    assert plain == pickle.dumps(chunk, protocol=5) and serialize.loads(plain)() == [2]

    @interactive
    def defined_here() -> int:
        return 0

    with_main = Chunk(shipped, [(defined_here,)])
    shipped_main, _ = serialize.dumps(with_main, mentions=with_main.mentions)
    assert serialize.loads(shipped_main).items[0][0]() == 0
