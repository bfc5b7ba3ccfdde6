"""ResultGatherer reassembly, verification and loss reporting, fed crafted datagrams."""

from __future__ import annotations

import os
import random
import time

import pytest

from ipython_parallel_kernel import gatherer
from ipython_parallel_kernel.gatherer import ResultGatherer
from ipython_parallel_kernel.wire import RECORD_PIECE, seal_record

KEY = "a" * 64
KERNEL = "127.0.0.1:10105"


@pytest.fixture
def rg(ipython_dir):
    """A gatherer on a free port that knows KEY, printing nothing."""
    g = ResultGatherer(("127.0.0.1", 0), key=KEY, output=None)
    try:
        yield g
    finally:
        g.stop()


def record(number: int, size: int = 0) -> dict:
    # Hex of random bytes compresses only 2:1, so `size` controls the piece count.
    return {
        "kernel": KERNEL,
        "number": number,
        "source": f"print({number})",
        "stdout": os.urandom(size).hex() if size else f"{number}\n",
        "stderr": "",
        "result": None,
    }


def five_pieces(number: int, seq: int = 1, key: str = KEY) -> tuple[dict, list[bytes]]:
    # Grow the record until it takes exactly five datagrams.
    size = RECORD_PIECE * 3
    while True:
        rec = record(number, size=size)
        datagrams = seal_record(key, 7, seq, number, KERNEL, rec)
        if len(datagrams) == 5:
            return rec, datagrams
        assert len(datagrams) < 5, len(datagrams)
        size += RECORD_PIECE // 4


def test_record_in_order_arrives_whole(rg):
    rec, datagrams = five_pieces(3)
    for d in datagrams:
        rg.receive(d)
    assert rg.records == [rec]
    assert rg.lost == [] and rg.rejected == 0


def test_record_out_of_order_arrives_whole(rg):
    rec, datagrams = five_pieces(4)
    shuffled = datagrams[:]
    random.Random(1).shuffle(shuffled)
    shuffled.reverse()
    for d in shuffled:
        rg.receive(d)
    assert rg.records == [rec]
    assert rg.lost == [] and rg.rejected == 0


def test_forged_and_wrongly_signed_datagrams_are_rejected(rg):
    rg.receive(os.urandom(200))
    rg.receive(b"")
    for d in seal_record("b" * 64, 7, 1, 1, KERNEL, record(1)):
        rg.receive(d)
    assert rg.records == []
    assert rg.rejected == 3
    # The right key still gets through afterwards.
    for d in seal_record(KEY, 7, 2, 2, KERNEL, record(2)):
        rg.receive(d)
    assert [r["number"] for r in rg.records] == [2]


def test_withheld_piece_is_reported_lost_after_timeout(rg, monkeypatch):
    monkeypatch.setattr(gatherer, "PIECE_TIMEOUT", 0.5)
    _, datagrams = five_pieces(12)
    for d in datagrams[:2] + datagrams[3:]:
        rg.receive(d)
    rg._expire(time.monotonic())
    assert rg.lost == []  # not yet timed out
    rg._expire(time.monotonic() + 1.0)
    assert rg.lost == ["kernel 127.0.0.1:10105, command 12: 1 of 5 pieces lost"]
    assert rg.records == []
    # The late piece does not resurrect the record nor report it again.
    rg.receive(datagrams[2])
    rg._expire(time.monotonic() + 10.0)
    assert rg.records == [] and len(rg.lost) == 1


def test_duplicate_pieces_of_a_completed_record_are_ignored(rg):
    rec, datagrams = five_pieces(5)
    for d in datagrams:
        rg.receive(d)
    for d in datagrams + datagrams[1:3]:
        rg.receive(d)
    assert rg.records == [rec]
    rg._expire(time.monotonic() + 60)
    assert rg.lost == [] and rg.rejected == 0


def test_too_many_partial_records_reports_the_oldest_lost(rg):
    first = seal_record(KEY, 7, 1, 1, KERNEL, record(1, size=RECORD_PIECE))
    assert len(first) >= 2
    rg.receive(first[0])
    for seq in range(2, gatherer.MAX_PARTIAL + 2):
        rg.receive(seal_record(KEY, 7, seq, seq, KERNEL, record(seq, size=RECORD_PIECE))[0])
    assert len(rg._partial) == gatherer.MAX_PARTIAL
    assert len(rg.lost) == 1
    assert rg.lost[0].startswith("kernel 127.0.0.1:10105, command 1: ")
    assert rg.records == []


def test_on_record_callback_and_printed_text(ipython_dir):
    import io

    out = io.StringIO()
    g = ResultGatherer(("127.0.0.1", 0), key=KEY, output=out, colour=False)
    try:
        seen = []
        g.on_record(seen.append)
        for d in seal_record(KEY, 7, 1, 9, KERNEL, record(9)):
            g.receive(d)
        assert [r["number"] for r in seen] == [9]
        assert out.getvalue().splitlines() == [
            "[127.0.0.1:10105] In [9]: print(9)",
            "[127.0.0.1:10105] [stdout] 9",
        ]
    finally:
        g.stop()
