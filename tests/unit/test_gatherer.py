"""ResultGatherer reassembly, verification and loss reporting, fed crafted datagrams."""

from __future__ import annotations

import os
import random
import time

import pytest

from ipython_parallel_kernel.client import gatherer
from ipython_parallel_kernel.client.gatherer import ResultGatherer
from ipython_parallel_kernel.core.clusterfile import (
    cluster_file_path,
    kernel_connection_file_path,
    write_cluster_file,
)
from ipython_parallel_kernel.core.connection import ConnectionInfo, write_connection_file
from ipython_parallel_kernel.core.records import RECORD_PIECE, seal_record

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


def seal(
    key: str, sender: int, seq: int, number: int, kernel: str, rec: dict, ago: float = 0.0
) -> list[bytes]:
    """``rec`` as the datagrams a kernel sends, signed ``ago`` seconds ago."""
    return seal_record(key, sender, seq, number, kernel, rec, sent=time.time() - ago)


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
        datagrams = seal(key, 7, seq, number, KERNEL, rec)
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


def test_forged_and_wrongly_signed_datagrams_are_rejected(rg, monkeypatch):
    monkeypatch.setattr(gatherer, "RESCAN_INTERVAL", 0.0)
    rg.receive(os.urandom(200))
    rg.receive(b"")
    for d in seal("b" * 64, 7, 1, 1, KERNEL, record(1)):
        rg.receive(d)
    assert rg.records == []
    assert rg.rejected == 2
    assert rg.unknown == {KERNEL: 1}
    # The right key still gets through afterwards.
    for d in seal(KEY, 7, 2, 2, KERNEL, record(2)):
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
    assert rg.replayed == 7


def test_too_many_partial_records_reports_the_oldest_lost(rg):
    first = seal(KEY, 7, 1, 1, KERNEL, record(1, size=RECORD_PIECE))
    assert len(first) >= 2
    rg.receive(first[0])
    for seq in range(2, gatherer.MAX_PARTIAL + 2):
        rg.receive(seal(KEY, 7, seq, seq, KERNEL, record(seq, size=RECORD_PIECE))[0])
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
        for d in seal(KEY, 7, 1, 9, KERNEL, record(9)):
            g.receive(d)
        assert [r["number"] for r in seen] == [9]
        assert out.getvalue().splitlines() == [
            "[127.0.0.1:10105] In [9]: print(9)",
            "[127.0.0.1:10105] [stdout] 9",
        ]
    finally:
        g.stop()


OTHER_KEY = "c" * 64


def cluster_kernel(index: int, key: str = OTHER_KEY) -> ConnectionInfo:
    """Kernel ``index`` of cluster ``w``, its connection file written as ipk-cluster does."""
    info = ConnectionInfo(ip="127.0.0.1", port=41000 + index, key=key, pid=4242)
    write_connection_file(info, kernel_connection_file_path("w", index))
    return info


def test_kernel_started_after_the_gatherer_is_seen(rg, monkeypatch):
    """A kernel of an ipk-cluster started after the gatherer: its first record shows."""
    monkeypatch.setattr(gatherer, "RESCAN_INTERVAL", 0.0)
    cluster_kernel(0)
    for d in seal(OTHER_KEY, 8, 1, 1, KERNEL, record(1)):
        rg.receive(d)
    assert [r["number"] for r in rg.records] == [1]
    assert rg.unknown == {} and rg.rejected == 0


def test_looks_again_only_after_the_interval(rg, monkeypatch):
    """Unknown keys make the gatherer look for new files at most every RESCAN_INTERVAL;
    their datagrams wait for that look instead of being dropped."""
    monkeypatch.setattr(gatherer, "RESCAN_INTERVAL", 3600.0)
    rg.rescan()
    cluster_kernel(1)
    rg.receive(seal(OTHER_KEY, 8, 1, 1, KERNEL, record(1))[0])
    rg._tick(time.monotonic())
    assert rg.records == [] and rg.unknown == {}
    rg._tick(time.monotonic() + 3600.0)
    assert [r["number"] for r in rg.records] == [1]


def test_keys_of_cluster_files_and_kernel_files_are_known(ipython_dir):
    """At start the gatherer knows ipk-kernel-*, ipk-cluster-* and their kernels' keys."""
    write_connection_file(ConnectionInfo(ip="127.0.0.1", port=10105, key="d" * 64))
    write_cluster_file(
        [ConnectionInfo(ip="127.0.0.1", port=10106, key="e" * 64)], cluster_file_path("x")
    )
    cluster_kernel(2, key="f" * 64)
    g = ResultGatherer(("127.0.0.1", 0), output=None)
    try:
        assert {b"d" * 64, b"e" * 64, b"f" * 64} <= g.keys
    finally:
        g.stop()


def test_records_with_no_known_key_are_reported_once_per_kernel(ipython_dir, monkeypatch):
    """Records signed with an unknown key are counted per kernel, and each kernel is named
    once (escaped: the name is unverified) with what to do."""
    import io

    monkeypatch.setattr(gatherer, "RESCAN_INTERVAL", 0.0)
    out = io.StringIO()
    g = ResultGatherer(("127.0.0.1", 0), key=KEY, output=out, colour=False)
    try:
        hostile = "127.0.0.1:9\x1b[2J\n"
        for seq in (1, 2):
            for name in (KERNEL, hostile):
                for d in seal("b" * 64, 7, seq, seq, name, record(seq)):
                    g.receive(d)
        assert g.records == []
        assert g.unknown == {KERNEL: 2, "127.0.0.1:9\\x1b[2J\\n": 2}
        printed = out.getvalue().splitlines()
        assert len(printed) == 2, printed
        assert printed[0].startswith(f"kernel {KERNEL} sends records signed with a key")
        assert "rg.watch(path)" in printed[0] and "--watch" in printed[0]
        assert printed[1].startswith("kernel 127.0.0.1:9\\x1b[2J\\n sends")
        assert "\x1b" not in out.getvalue()
    finally:
        g.stop()


def test_replay_after_many_other_records_is_refused(rg):
    """A record replayed after thousands of others is refused and counted, not shown again;
    a replayed piece of it opens no partial record, so no false "pieces lost"."""
    _, datagrams = five_pieces(1, seq=1)
    for d in datagrams:
        rg.receive(d)
    for seq in range(2, 2 + 3000):
        rg.receive(seal(KEY, 7, seq, seq, KERNEL, record(seq))[0])
    assert len(rg.records) == 3001
    for d in datagrams:
        rg.receive(d)
    rg.receive(datagrams[2])
    assert len(rg.records) == 3001 and rg.replayed == 6
    assert rg._partial == {}
    rg._expire(time.monotonic() + 60)
    assert rg.lost == []


def test_records_older_than_the_window_are_refused_once_named(rg):
    """Datagrams signed more than MAX_AGE ago (a replay to a restarted gatherer) or ahead
    are refused and counted; the kernel is named once, with the clocks to check."""
    import io

    out = io.StringIO()
    rg.output = out
    rg.colour = False
    for ago in (gatherer.MAX_AGE + 5, 3600, -(gatherer.MAX_AGE + 5)):
        for d in seal(KEY, 9, 1, 1, KERNEL, record(1), ago=ago):
            rg.receive(d)
    assert rg.records == [] and rg._partial == {}
    assert rg.replayed == 3
    printed = out.getvalue().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"kernel {KERNEL} sent records signed")
    assert "clocks" in printed[0]
    for d in seal(KEY, 9, 1, 1, KERNEL, record(1), ago=gatherer.MAX_AGE - 5):
        rg.receive(d)
    assert [r["number"] for r in rg.records] == [1]


def test_sequence_window_refuses_what_fell_below_it(rg, monkeypatch):
    """Below the highest record shown minus SEQ_WINDOW, an unseen record is refused too."""
    monkeypatch.setattr(gatherer, "SEQ_WINDOW", 8)
    for seq in (1, 20):
        rg.receive(seal(KEY, 7, seq, seq, KERNEL, record(seq))[0])
    rg.receive(seal(KEY, 7, 5, 5, KERNEL, record(5))[0])  # 20 - 8 >= 5
    rg.receive(seal(KEY, 7, 15, 15, KERNEL, record(15))[0])  # late, inside the window
    assert [r["number"] for r in rg.records] == [1, 20, 15]
    assert rg.replayed == 1


@pytest.mark.parametrize("text", ['["not a kernel"]', '{"ip": "127.0.0.1"}', "{broken"])
def test_ipk_gather_says_which_watch_file_it_cannot_read(ipython_dir, tmp_path, capsys, text):
    """ipk-gather --watch with a file that is no connection or cluster file: one line, status 1."""
    from ipython_parallel_kernel.apps import gather as gather_app

    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert gather_app.main(["--port", "0", "--watch", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"ipk-gather: cannot read {bad}: ")
