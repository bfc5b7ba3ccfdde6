"""Fuzzed frames: mutations of real frames never yield a message and are never unpickled."""

from __future__ import annotations

import collections
import os
import pickle
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

from hostile import MiB, PeakRss

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core import serialize
from ipython_parallel_kernel.core.wire import Channel, Message
from ipython_parallel_kernel.errors import WireError

KEY = b"fuzz-key"
OTHER_KEY = b"not-the-key"
DECODER_CASES = 12_000
SOCKET_CASES = 300
SEED = 20240610

Pieces = list[bytes]


class CreatesFile:
    """Unpickling this makes a directory at ``path``: the proof that something was unpickled
    (a directory rather than a file, so nothing is left open)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def evil_payload(path: Path) -> bytes:
    """A push payload that creates ``path`` when the kernel unpickles it."""
    return pickle.dumps({"planted": CreatesFile(path)}, protocol=5)


def sealed(channel: Channel, i: int, payload: bytes, rng: random.Random) -> Pieces:
    """One of several kinds of real frame from ``channel``, as its pieces."""
    kind = i % 4
    if kind == 0:
        pieces = channel.seal("connect_request", {"nonce": channel.nonce})
    elif kind == 1:
        pieces = channel.seal("execute_request", {"source": f"hit_{i} = 1"}, id=i)
    elif kind == 2:
        pieces = channel.seal("push_request", {"i": i}, payload, id=i)
    else:
        buffers = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(rng.randrange(1, 4))]
        pieces = channel.seal("push_request", {"i": i}, payload, buffers, id=i)
    return [bytes(memoryview(p).cast("B")) for p in pieces]


def first_frames(receiver: Channel, key: bytes, payload: bytes, count: int) -> list[Pieces]:
    """``count`` frames, each the first of its own sender, addressed to ``receiver``: each
    decodes alone, so any change to it must make it fail."""
    rng = random.Random(SEED)
    frames = []
    for i in range(count):
        sender = Channel(key, sign_buffers=True)
        sender.peer_nonce = receiver.nonce
        frames.append(sealed(sender, i, payload, rng))
    return frames


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        bit = rng.randrange(len(out) * 8)
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def set_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(out))
        out[at] = (out[at] + rng.randrange(1, 256)) % 256
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def delete(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randrange(1, 64) :]


def insert(data: bytes, rng: random.Random) -> bytes:
    # Strictly inside: bytes after a complete frame would only start the next one.
    at = rng.randrange(len(data))
    return data[:at] + rng.randbytes(rng.randrange(1, 64)) + data[at:]


BYTE_MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    flip_bits,
    set_bytes,
    truncate,
    delete,
    insert,
]


def swap_pieces(pieces: Pieces, other: Pieces, rng: random.Random) -> bytes | None:
    """Some pieces of ``pieces`` replaced by ``other``'s (a frame of the same shape)."""
    if [len(p) for p in pieces] != [len(p) for p in other]:
        return None
    cut = rng.randrange(1, len(pieces))
    mixed = pieces[:cut] + other[cut:] if rng.random() < 0.5 else other[:cut] + pieces[cut:]
    data = b"".join(mixed)
    return None if data in (b"".join(pieces), b"".join(other)) else data


def reorder_pieces(pieces: Pieces, rng: random.Random) -> bytes | None:
    """Two pieces of the frame exchanged."""
    i, j = rng.sample(range(len(pieces)), 2)
    if pieces[i] == pieces[j]:
        return None
    swapped = list(pieces)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return b"".join(swapped)


def mutations(frames: list[Pieces], count: int, rng: random.Random) -> list[bytes]:
    """``count`` mutated frames: byte-level changes, and pieces swapped or reordered."""
    out: list[bytes] = []
    while len(out) < count:
        pieces = rng.choice(frames)
        choice = rng.random()
        if choice < 0.15:
            data = swap_pieces(pieces, rng.choice(frames), rng)
        elif choice < 0.25:
            data = reorder_pieces(pieces, rng)
        else:
            data = rng.choice(BYTE_MUTATIONS)(b"".join(pieces), rng)
        if data is not None and data != b"".join(pieces):
            out.append(data)
    return out


def out_of_order(receiver: Channel, payload: bytes, rng: random.Random) -> list[bytes]:
    """Streams of one sender's valid frames that start with anything but its first."""
    sender = Channel(KEY)
    sender.peer_nonce = receiver.nonce
    frames = [b"".join(sealed(sender, i, payload, rng)) for i in range(5)]
    streams = []
    for _ in range(200):
        order = rng.sample(range(len(frames)), rng.randrange(1, len(frames) + 1))
        if order[0] != 0:
            streams.append(b"".join(frames[i] for i in order))
    return streams


def decode_like_a_kernel(receiver: Channel, data: bytes, rng: random.Random) -> str:
    """Feed ``data`` in random chunks to a fresh decoder for ``receiver``'s connection and
    unpickle whatever comes out, as the kernel would; return the outcome's name."""
    twin = Channel(KEY)
    twin.nonce = receiver.nonce
    decoder = twin.decoder()
    messages: list[Message] = []
    cuts = sorted(rng.sample(range(1, len(data)), min(2, len(data) - 1))) if len(data) > 1 else []
    try:
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            messages += decoder.feed(data[start:end])
    except WireError as e:
        outcome = type(e).__name__
    else:
        outcome = "waiting for more"
    for message in messages:
        serialize.loads(message.payload, message.buffers)
    return "MESSAGE" if messages else outcome


def test_fuzzed_frames_never_yield_a_message(tmp_path):
    """Over 10,000 mutations of real frames (wrong key; right key truncated, bit-flipped,
    spliced, reordered) each raise WireError or wait for more; nothing is unpickled."""
    planted, control = tmp_path / "planted", tmp_path / "control"
    receiver = Channel(KEY)
    rng = random.Random(SEED)
    ours = first_frames(receiver, KEY, evil_payload(planted), 40)
    theirs = first_frames(receiver, OTHER_KEY, evil_payload(planted), 40)
    # The control: an unchanged frame decodes, and its payload does create a file.
    unchanged = b"".join(first_frames(receiver, KEY, evil_payload(control), 3)[2])
    assert decode_like_a_kernel(receiver, unchanged, rng) == "MESSAGE"
    assert control.exists()
    cases = (
        [b"".join(p) for p in theirs]
        + mutations(theirs, DECODER_CASES // 4, rng)
        + mutations(ours, DECODER_CASES - DECODER_CASES // 4, rng)
        + out_of_order(receiver, evil_payload(planted), rng)
    )
    start = time.perf_counter()
    outcomes = collections.Counter(decode_like_a_kernel(receiver, data, rng) for data in cases)
    elapsed = time.perf_counter() - start
    print(f"\n{len(cases)} fuzzed frames in {elapsed:.1f} s: {dict(outcomes.most_common())}")
    assert len(cases) >= 10_000
    assert outcomes["MESSAGE"] == 0
    assert not planted.exists()


def shake_hands(sock: socket.socket, channel: Channel) -> None:
    """A real handshake with the kernel on ``sock``, as a client with ``channel``'s key."""
    sock.sendall(b"".join(channel.seal("connect_request", {"nonce": channel.nonce})))
    decoder = channel.decoder()
    replies: list[Message] = []
    while not replies:
        chunk = sock.recv(65536)
        assert chunk, "the kernel hung up during the handshake"
        replies = decoder.feed(chunk)
    channel.peer_nonce = replies[0].content["nonce"]


def send_and_drain(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data``, half-close, and return what the kernel sent until it hung up."""
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_fuzzed_frames_over_sockets_leave_the_kernel_unharmed(kernel, rk, tmp_path):
    """Hundreds of mutated frames sent to a real kernel, with and without a real handshake
    first, are all refused: nothing unpickled, kernel alive, RSS bounded, client served."""
    planted, control = tmp_path / "planted", tmp_path / "control"
    rng = random.Random(SEED)
    receiver = Channel(KEY)  # only its nonce matters: the frames are mutated anyway
    theirs = first_frames(receiver, OTHER_KEY, evil_payload(planted), 20)
    keyless = mutations(theirs, SOCKET_CASES // 2, rng)
    key = rk.info.key

    def mutated_push(channel: Channel) -> bytes:
        pieces = channel.seal("push_request", {}, evil_payload(planted), id=1)
        frame = [bytes(p) for p in pieces]
        data = reorder_pieces(frame, rng) if rng.random() < 0.1 else None
        return data or rng.choice(BYTE_MUTATIONS)(b"".join(frame), rng)

    alerts = 0
    with PeakRss(kernel.pid) as rss:
        for data in keyless:
            with socket.create_connection(kernel.address, timeout=10) as sock:
                alerts += b"IPK!" in send_and_drain(sock, data)
        for _ in range(SOCKET_CASES - len(keyless)):
            with socket.create_connection(kernel.address, timeout=10) as sock:
                channel = Channel(key)
                shake_hands(sock, channel)
                alerts += b"IPK!" in send_and_drain(sock, mutated_push(channel))
    print(f"\n{SOCKET_CASES} fuzzed frames over sockets: {alerts} alerts; kernel {rss}")
    assert kernel.process.poll() is None
    assert not planted.exists()
    assert rss.growth < 64 * MiB
    assert rk.execute("6 * 7").text == "42"
    assert "planted" not in rk
    # The control: the same payload, sent properly, is unpickled by the kernel.
    good = RemoteKernel(kernel.address, timeout=30)
    good.push(CreatesFile(control), "planted")
    assert control.exists()
    good.disconnect()
