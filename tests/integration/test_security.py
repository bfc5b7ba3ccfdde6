"""Who may talk to a kernel: allow/deny lists, keys, garbage, oversized frames, TLS, and
connections that end badly: cut short, idle, denied at run time, TLS on one end only."""

from __future__ import annotations

import dataclasses
import os
import selectors
import socket
import stat
import subprocess
import sys

import numpy as np
import psutil
import pytest
from conftest import kernel_env, self_signed_certificate, start_kernel, stop_process, wait_for

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core.connection import read_connection_file
from ipython_parallel_kernel.core.wire import ALERT_MAGIC, Channel
from ipython_parallel_kernel.errors import ConnectionFailed, ConnectionRefused, KernelDied


def test_client_outside_allow_list_is_refused(kernel, rk):
    """A client connecting from 127.0.0.2 is refused with a clear error; others carry on."""
    with pytest.raises(ConnectionRefused) as info:
        RemoteKernel(kernel.address, source_address="127.0.0.2", timeout=30)
    assert str(info.value) == f"127.0.0.2 is not allowed by kernel 127.0.0.1:{kernel.port}"
    assert rk.execute("1 + 1").text == "2"
    assert "127.0.0.2 is not allowed" in kernel.log()


def test_allow_at_run_time_then_deny(kernel, rk):
    """allow() lets 127.0.0.2 in; deny() of a covering network shuts it out again."""
    rk.allow("127.0.0.2")
    guest = RemoteKernel(kernel.address, source_address="127.0.0.2", timeout=30)
    assert guest.execute("'guest'").text == "'guest'"
    guest.disconnect()
    lists = rk.deny("127.0.0.0/24")
    assert "127.0.0.0/24" in lists["deny"]
    with pytest.raises(ConnectionRefused, match=r"127\.0\.0\.2 is not allowed"):
        RemoteKernel(kernel.address, source_address="127.0.0.2", timeout=30)


def test_allow_flag_accepts_a_network(ipython_dir):
    """-a/--allow on the command line takes CIDRs and is repeatable; --deny wins."""
    process = start_kernel(
        ipython_dir, "-a", "127.0.0.0/29", "--allow", "127.0.1.1", "--deny", "127.0.0.3"
    )
    try:
        two = RemoteKernel(process.address, source_address="127.0.0.2", timeout=30)
        other = RemoteKernel(process.address, source_address="127.0.1.1", timeout=30)
        assert two.execute("1").number == 1
        assert other.execute("2").number == 2
        with pytest.raises(ConnectionRefused):
            RemoteKernel(process.address, source_address="127.0.0.3", timeout=30)
        two.disconnect()
        other.disconnect()
    finally:
        process.stop()


def test_wrong_key_is_refused_and_kernel_keeps_serving(kernel, rk):
    """A client with the wrong key gets a clear error; the kernel serves others as before."""
    with pytest.raises(ConnectionRefused) as info:
        RemoteKernel(kernel.address, key="0" * 64, timeout=30)
    message = str(info.value)
    assert "signature does not match" in message and "connection file" in message
    assert rk.execute("6 * 7").text == "42"
    assert "signature does not match" in kernel.log()


def test_only_a_bad_signature_is_blamed_on_the_key(kernel):
    """A peer of another protocol version is told so, without the wrong-key hint."""
    with socket.create_connection(kernel.address, timeout=10) as raw:
        raw.sendall(b"IPK\x01" + bytes(16))
        raw.settimeout(10)
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
    assert b"version 1 of the wire protocol" in received
    assert b"Is the key" not in received


def test_kernel_survives_garbage(kernel, rk):
    """Random bytes, a truncated frame and an unsigned frame never hurt the kernel."""
    for junk in (os.urandom(4096), b"IPK\x01" + b"\xff" * 20, b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(kernel.address, timeout=10) as raw:
            raw.sendall(junk)
            raw.shutdown(socket.SHUT_WR)
            raw.settimeout(10)
            while raw.recv(4096):
                pass
    assert rk.execute("'still here'").text == "'still here'"


def test_replayed_frame_is_refused(kernel, rk):
    """Bytes recorded from one connection and replayed on another are refused."""
    channel = Channel(rk.info.key)
    hello = b"".join(bytes(p) for p in channel.seal("connect_request", {"nonce": channel.nonce}))
    channel.peer_nonce = "recorded-elsewhere"
    request = b"".join(
        bytes(p) for p in channel.seal("execute_request", {"source": "hit = 1"}, id=1)
    )
    with socket.create_connection(kernel.address, timeout=10) as raw:
        raw.sendall(hello + request)
        raw.settimeout(10)
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
    assert b"another connection" in received
    assert "hit" not in rk


def test_oversized_frame_is_refused_before_allocation(ipython_dir):
    """A frame over --KernelApp.max_frame is refused; the client is told why."""
    process = start_kernel(ipython_dir, "--KernelApp.max_frame=100000")
    try:
        client = RemoteKernel(process.address, timeout=30)
        client["small"] = 1
        with pytest.raises(KernelDied, match="maximum is 100000"):
            client["big"] = np.zeros(1_000_000)
        survivor = RemoteKernel(process.address, timeout=30)
        assert survivor["small"] == 1
        survivor.disconnect()
    finally:
        process.stop()


def test_connection_file_is_private(kernel):
    """The connection file is mode 0600 in a 0700 directory."""
    assert stat.S_IMODE(kernel.connection_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(kernel.connection_file.parent.stat().st_mode) == 0o700


def test_tls_kernel(ipython_dir, tmp_path):
    """--tls-cert/--tls-key serve TLS; a client trusts the certificate from the file."""
    cert, key = self_signed_certificate(tmp_path)
    process = start_kernel(ipython_dir, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        client = RemoteKernel(process.address, timeout=30)
        assert client.info.tls
        client["x"] = np.arange(1_000_000.0)
        assert client.execute("float(x.sum())").text == str(float(np.arange(1_000_000.0).sum()))
        assert np.array_equal(client["x"], np.arange(1_000_000.0))
        client.disconnect()
        with socket.create_connection(process.address, timeout=10) as raw:
            raw.sendall(b"IPK\x01" + b"\0" * 60)
            raw.settimeout(10)
            # Plain frames are not understood under TLS: the answer is a plain refusal.
            answer = raw.recv(4096)
            assert answer.startswith(ALERT_MAGIC) and b"serves TLS" in answer
    finally:
        process.stop()


# -- connections that end badly ------------------------------------------------------

#: A client that authenticates, sends half of a 500 MB push, then waits to be killed.
HALF_A_PUSH = """
import socket, sys, time
from ipython_parallel_kernel.core.connection import read_connection_file
from ipython_parallel_kernel.core.wire import Channel

info = read_connection_file(sys.argv[1])
channel = Channel(info.key)
sock = socket.create_connection(info.address, timeout=30)
sock.sendall(b"".join(channel.seal("connect_request", {"nonce": channel.nonce})))
decoder = channel.decoder()
while not (replies := decoder.feed(sock.recv(65536))):
    pass
channel.peer_nonce = replies[0].content["nonce"]
size = 500 * 2**20
pieces = channel.seal("push_request", {}, b"", [memoryview(bytearray(size))], id=1)
left = sum(memoryview(p).nbytes for p in pieces) - size // 2
for piece in pieces:
    view = memoryview(piece).cast("B")[:left]
    sock.sendall(view)
    left -= view.nbytes
print("half sent", flush=True)
time.sleep(120)
"""


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid``, in MiB."""
    return psutil.Process(pid).memory_info().rss / 2**20


def test_memory_of_a_push_cut_short_is_released_at_once(kernel):
    """A client killed (SIGKILL) halfway through a 500 MB push: the kernel's RSS comes
    back to within 64 MiB of where it was, without waiting for a garbage collection."""
    before = rss_mib(kernel.pid)
    client = subprocess.Popen(
        [sys.executable, "-c", HALF_A_PUSH, str(kernel.connection_file)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=kernel_env(kernel.ipython_dir),
        text=True,
    )
    try:
        assert read_line(client, 60) == "half sent"
        wait_for(lambda: rss_mib(kernel.pid) > before + 200, timeout=30)
        client.kill()
        client.wait(10)
        wait_for(lambda: rss_mib(kernel.pid) < before + 64, timeout=30)
    finally:
        stop_process(client)
    survivor = RemoteKernel(kernel.address, timeout=30)
    assert survivor.execute("'alive'").text == "'alive'"
    survivor.disconnect()


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """The next line ``process`` prints, waited for at most ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout} s"
        return process.stdout.readline().strip()


def test_deny_at_run_time_disconnects_the_denied_host(ipython_dir):
    """Started with -a 127.0.0.2, the kernel drops a client connected from 127.0.0.2 as
    soon as deny("127.0.0.2") runs, telling it why; other clients carry on."""
    process = start_kernel(ipython_dir, "-a", "127.0.0.2")
    name = f"127.0.0.1:{process.port}"
    try:
        guest = RemoteKernel(process.address, source_address="127.0.0.2", timeout=30)
        owner = RemoteKernel(process.address, timeout=30)
        assert guest.execute("'guest'").text == "'guest'"
        owner.deny("127.0.0.2")
        with pytest.raises(KernelDied) as info:
            guest.execute("'still here?'")
        assert str(info.value) == f"lost kernel {name}: 127.0.0.2 is now denied by kernel {name}"
        assert owner.execute("6 * 7").text == "42"
        assert "127.0.0.2 is now denied" in process.log()
        owner.disconnect()
    finally:
        process.stop()


def test_idle_connection_is_closed_at_the_handshake_deadline(ipython_dir):
    """With --KernelApp.handshake_timeout=0.5, a connection that sends nothing is closed
    with an alert saying why."""
    process = start_kernel(ipython_dir, "--KernelApp.handshake_timeout=0.5")
    try:
        with socket.create_connection(process.address, timeout=10) as raw:
            raw.settimeout(10)
            received = b""
            while chunk := raw.recv(4096):
                received += chunk
        assert received.startswith(ALERT_MAGIC)
        assert b"no valid connect_request within 0.5 s" in received
    finally:
        process.stop()


# -- TLS on one end only, or the wrong certificate --------------------------------------


@pytest.fixture
def tls_kernel(ipython_dir, tmp_path):
    """A kernel serving TLS with a fresh self-signed certificate."""
    cert, key = self_signed_certificate(tmp_path)
    process = start_kernel(ipython_dir, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        yield process
    finally:
        process.stop()


def test_tls_certificate_mismatch_is_named(tls_kernel, tmp_path):
    """A connection file pinning another certificate: the handshake fails with an error
    saying the kernel's certificate is not the one in the file."""
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = self_signed_certificate(other)
    info = read_connection_file(tls_kernel.connection_file)
    stale = dataclasses.replace(info, tls_certificate=other_cert.read_text())
    with pytest.raises(ConnectionFailed) as error:
        RemoteKernel(stale, timeout=30)
    assert str(error.value).startswith(
        f"TLS handshake with kernel 127.0.0.1:{tls_kernel.port} failed: its certificate is "
        "not the one in the connection file"
    )


def test_plain_client_is_told_the_kernel_serves_tls(tls_kernel):
    """A client whose connection file says plain TCP gets the kernel's alert: it serves TLS."""
    info = read_connection_file(tls_kernel.connection_file)
    with pytest.raises(ConnectionRefused) as error:
        RemoteKernel(dataclasses.replace(info, tls=False), timeout=30)
    assert str(error.value).startswith(f"kernel 127.0.0.1:{tls_kernel.port} serves TLS")
    assert "connection file" in str(error.value)


def test_tls_client_is_told_the_kernel_does_not_serve_tls(kernel, tmp_path):
    """A client whose connection file says TLS, talking to a plain kernel, is told the
    kernel does not serve TLS though the file says it does."""
    cert, _ = self_signed_certificate(tmp_path)
    info = read_connection_file(kernel.connection_file)
    wrong = dataclasses.replace(info, tls=True, tls_certificate=cert.read_text())
    with pytest.raises(ConnectionRefused) as error:
        RemoteKernel(wrong, timeout=30)
    assert str(error.value).startswith(
        f"kernel 127.0.0.1:{kernel.port} does not serve TLS, but the client's connection "
        "file says it does"
    )
    assert "speaks TLS" in kernel.log()
