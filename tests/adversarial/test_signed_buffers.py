"""sign_buffers: announced in the connection file, used by clients and copies, enforced
both ways; a byte altered in transit by a proxy is refused."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import start_kernel, wait_for

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core.connection import ConnectionInfo, read_connection_file
from ipython_parallel_kernel.errors import KernelDied

ARRAY_BYTES = 8 * 1024**2
SIGN = "--KernelApp.sign_buffers=True"
#: Refused pushes in a row: the race between the refusal and the end of the stream is rare.
REFUSALS = 100


class TamperingProxy:
    """Forwards TCP connections to ``target``; flips one byte at a chosen stream offset.

    ``arm(direction)`` makes the byte half an array's length past what has been forwarded
    so far in that direction ("up": to the kernel, "down": to the client) be inverted:
    inside the buffer of the next array-sized message.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()[:2]
        self.forwarded = {"up": 0, "down": 0}
        self.flip_at: dict[str, int | None] = {"up": None, "down": None}
        self.flipped = {"up": 0, "down": 0}
        self._sockets: list[socket.socket] = [self.server]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, direction: str) -> None:
        """Flip one byte inside the next array-sized message going ``direction``."""
        with self._lock:
            self.flip_at[direction] = self.forwarded[direction] + ARRAY_BYTES // 2

    def close(self) -> None:
        """Close the listening socket and every forwarded connection."""
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            kernel = socket.create_connection(self.target, timeout=10)
            kernel.settimeout(None)
            self._sockets += [client, kernel]
            threading.Thread(target=self._pump, args=(client, kernel, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(kernel, client, "down"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(1 << 20):
                with self._lock:
                    start = self.forwarded[direction]
                    at = self.flip_at[direction]
                    if at is not None and start <= at < start + len(data):
                        changed = bytearray(data)
                        changed[at - start] ^= 0xFF
                        data = bytes(changed)
                        self.flip_at[direction] = None
                        self.flipped[direction] += 1
                    self.forwarded[direction] += len(data)
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            return


@pytest.fixture
def signing_kernel(ipython_dir) -> Iterator:
    """A kernel started with sign_buffers."""
    process = start_kernel(ipython_dir, SIGN)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def proxy(signing_kernel) -> Iterator[TamperingProxy]:
    """A tampering proxy in front of ``signing_kernel``."""
    proxy = TamperingProxy(signing_kernel.address)
    try:
        yield proxy
    finally:
        proxy.close()


def through(proxy: TamperingProxy, kernel) -> RemoteKernel:
    """A client of ``kernel`` that connects through ``proxy``, with its connection file."""
    info = read_connection_file(kernel.connection_file)
    host, port = proxy.address
    return RemoteKernel(dataclasses.replace(info, ip=host, port=port), timeout=30)


def test_connection_file_says_whether_buffers_are_signed(signing_kernel, kernel):
    """A sign_buffers kernel writes it into its connection file; others, and old files, do not."""
    assert read_connection_file(signing_kernel.connection_file).sign_buffers is True
    assert read_connection_file(kernel.connection_file).sign_buffers is False
    old = {"ip": "127.0.0.1", "port": 10105, "key": "k", "signature_scheme": "hmac-sha256"}
    assert ConnectionInfo.from_dict(old).sign_buffers is False


def test_push_altered_in_transit_is_refused(signing_kernel, proxy):
    """Through a proxy, a signed push arrives intact; a byte flipped inside a pushed buffer
    gets a clear error, a log line, and leaves the kernel and its namespace unchanged."""
    array = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    client = through(proxy, signing_kernel)
    client["x"] = array
    assert client.execute("float(x.sum())").text == str(float(array.sum()))
    proxy.arm("up")
    with pytest.raises(KernelDied, match="buffers do not match their signature") as info:
        client["y"] = array
    print(f"\nclient saw: {info.value}")
    assert proxy.flipped["up"] == 1
    direct = RemoteKernel(signing_kernel.address, timeout=30)
    assert "y" not in direct
    assert np.array_equal(direct["x"], array)
    wait_for(lambda: "buffers do not match their signature" in signing_kernel.log(), 10)
    direct.disconnect()


def test_reply_altered_in_transit_is_refused_by_the_client(signing_kernel, proxy):
    """A byte flipped inside a pulled array's buffer on its way to the client is refused there."""
    array = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    client = through(proxy, signing_kernel)
    client["x"] = array
    assert np.array_equal(client["x"], array)
    proxy.arm("down")
    with pytest.raises(KernelDied, match="buffers do not match their signature"):
        client.pull("x")
    assert proxy.flipped["down"] == 1
    direct = RemoteKernel(signing_kernel.address, timeout=30)
    assert np.array_equal(direct["x"], array)
    direct.disconnect()


def test_unsigned_push_is_refused(signing_kernel):
    """A client that does not sign (its key given, not the connection file) is refused
    with an error saying buffers must be signed, every time: the reason is not lost to
    the end of the stream arriving first. The kernel's namespace is unchanged."""
    key = read_connection_file(signing_kernel.connection_file).key
    for _ in range(REFUSALS):
        unsigned = RemoteKernel(signing_kernel.address, key=key, timeout=30)
        assert unsigned.execute("1 + 1").text == "2"  # no buffers: nothing to sign
        with pytest.raises(KernelDied, match="buffers must be signed"):
            unsigned["y"] = np.zeros(ARRAY_BYTES // 8)
    direct = RemoteKernel(signing_kernel.address, timeout=30)
    assert "y" not in direct
    direct.disconnect()


def test_copy_to_a_signing_kernel_signs(kernel, signing_kernel):
    """A kernel copying an array to a sign_buffers kernel signs it, so the copy is accepted."""
    array = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    source = RemoteKernel(kernel.address, timeout=30)
    target = RemoteKernel(signing_kernel.address, timeout=30)
    source["z"] = array
    assert source.copy_to("z", [target]) == [f"127.0.0.1:{signing_kernel.port}"]
    assert np.array_equal(target["z"], array)
    source.disconnect()
    target.disconnect()
