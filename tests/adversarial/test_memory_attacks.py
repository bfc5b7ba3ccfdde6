"""Memory an attacker can make a kernel or a client take: frames announcing gigabytes."""

from __future__ import annotations

import json
import mmap
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import kernel_env
from hostile import MiB, PeakRss

from ipython_parallel_kernel.core.wire import MAC_LEN, MAGIC, Channel

GiB = 1024**3
PREFIX = struct.Struct(">4sBBHIQ")  # the layout documented in wire.py's docstring
#: How long each attacker sends, at most.
ATTACK_SECONDS = 3.0
#: What an attack may cost the process attacked: generous, far below the gigabytes announced.
RSS_BOUND = 64 * MiB
FAKE_HEAD = b'[{"type":"connect_reply","session":null,"seq":1},{"nonce":"x"}]'


def opening(kind: str) -> bytes:
    """The start of a frame without the key that announces about 1 GiB, in one of three ways."""
    if kind == "head":
        return PREFIX.pack(MAGIC, 0, MAC_LEN, 0, GiB - 1, 0)
    if kind == "payload":
        return PREFIX.pack(MAGIC, 0, MAC_LEN, 0, len(FAKE_HEAD), GiB) + FAKE_HEAD + bytes(MAC_LEN)
    sizes = struct.pack(">Q", GiB)
    return PREFIX.pack(MAGIC, 0, MAC_LEN, 1, len(FAKE_HEAD), 0) + sizes + FAKE_HEAD + bytes(MAC_LEN)


def flood(sock: socket.socket, start: bytes, until: float) -> int:
    """Send ``start``, then zeros as fast as the peer takes them until ``until`` or it hangs
    up; return the bytes sent."""
    chunk = memoryview(start + bytes(MiB))
    sent = 0
    sock.settimeout(0.2)
    while time.monotonic() < until:
        try:
            n = sock.send(chunk)
        except TimeoutError:
            continue
        except OSError:
            break
        sent += n
        chunk = chunk[n:] if n < chunk.nbytes else memoryview(bytes(MiB))
    return sent


def test_unauthenticated_peers_cannot_take_a_kernels_memory(kernel, rk):
    """Three keyless peers announcing 1 GiB each and sending flat out leave the kernel's RSS
    nearly unchanged, while it keeps serving a legitimate client."""
    kinds = ["head", "payload", "buffer"]
    sent = dict.fromkeys(kinds, 0)
    until = time.monotonic() + ATTACK_SECONDS

    def attack(kind: str) -> None:
        with socket.create_connection(kernel.address, timeout=10) as sock:
            sent[kind] = flood(sock, opening(kind), until)

    attackers = [threading.Thread(target=attack, args=(kind,)) for kind in kinds]
    served = 0
    with PeakRss(kernel.pid) as rss:
        for attacker in attackers:
            attacker.start()
        while True:
            assert rk.execute("6 * 7").text == "42"
            served += 1
            if not any(attacker.is_alive() for attacker in attackers):
                break
        for attacker in attackers:
            attacker.join(ATTACK_SECONDS + 10)
    print(
        f"\npre-auth flood of {kernel.address}: kernel {rss}; sent "
        + ", ".join(f"{kind} {n / MiB:.0f} MiB" for kind, n in sent.items())
        + f"; {served} executes served meanwhile"
    )
    assert kernel.process.poll() is None
    assert rss.growth < RSS_BOUND
    assert rk.execute("'still here'").text == "'still here'"


CLIENT = """
import json, resource, sys
from ipython_parallel_kernel import RemoteKernel
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    RemoteKernel(("127.0.0.1", int(sys.argv[1])), key="0" * 64, connect_timeout=10)
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"error": error, "growth": (peak - before) * 1024}))
"""


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("head", "maximum is 65536 before the peer is authenticated"), ("payload", "signature")],
)
def test_fake_kernel_cannot_take_a_clients_memory(kind, reason, ipython_dir):
    """A fake kernel answering with a keyless frame that announces 1 GiB, then streaming
    zeros, leaves the client's peak RSS nearly unchanged, and the client says why it quit."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    sent = [0]

    def fake_kernel() -> None:
        server.settimeout(30)
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)  # the client's connect_request
            sent[0] = flood(conn, opening(kind), time.monotonic() + ATTACK_SECONDS)

    thread = threading.Thread(target=fake_kernel)
    thread.start()
    try:
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=kernel_env(ipython_dir),
        )
    finally:
        thread.join(ATTACK_SECONDS + 40)
        server.close()
    assert client.returncode == 0, client.stderr
    outcome = json.loads(client.stdout.splitlines()[-1])
    print(
        f"\nfake kernel ({kind} of 1 GiB): client peak RSS growth "
        f"{outcome['growth'] / MiB:.1f} MiB, fake kernel sent {sent[0] / MiB:.0f} MiB; "
        f"client said: {outcome['error']}"
    )
    assert outcome["error"].startswith("KernelDied: lost kernel 127.0.0.1:")
    assert "refused" in outcome["error"] and reason in outcome["error"]
    assert outcome["growth"] < RSS_BOUND


def rss() -> int:
    """This process's resident memory, in bytes."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def test_authenticated_4_gib_claim_without_data_takes_no_memory():
    """An authenticated frame announcing a 4 GiB buffer takes memory only as its bytes come."""
    sender, receiver = Channel(b"key"), Channel(b"key")
    sender.peer_nonce = receiver.nonce
    claim = memoryview(mmap.mmap(-1, 4 * GiB))  # never touched, so never resident
    pieces = sender.seal("push_request", {}, b"", [claim])
    decoder = receiver.decoder()
    before = rss()
    assert decoder.feed(b"".join(bytes(p) for p in pieces[:-1]) + bytes(4096)) == []
    target = decoder.buffer_to_fill()
    assert target is not None and target.nbytes == 4 * GiB - 4096
    # Watch for a while: a helper that populated the whole buffer would show within it.
    deadline, peak = time.monotonic() + 1.0, before
    while time.monotonic() < deadline:
        peak = max(peak, rss())
        time.sleep(0.01)
    idle = peak - before
    arrived, zeros = 100 * MiB, bytes(MiB)
    for offset in range(0, arrived, MiB):
        target[offset : offset + MiB] = zeros
        assert decoder.filled(MiB) == []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        peak = max(peak, rss())
        time.sleep(0.01)
    after = peak - before
    print(
        f"\nauthenticated 4 GiB claim: RSS growth {idle / MiB:.0f} MiB with no data, "
        f"{after / MiB:.0f} MiB after {arrived / MiB:.0f} MiB arrived"
    )
    assert idle < RSS_BOUND
    assert after < arrived + RSS_BOUND
