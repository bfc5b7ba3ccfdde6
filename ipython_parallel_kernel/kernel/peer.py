"""Kernel to kernel: this kernel pushes a value straight to other kernels.

``copy_request`` (``RemoteKernel.copy_to``, ``InteractiveCluster.move``) runs as an
engine job on the source kernel: the value is pickled once, then pushed to every
target over short-lived connections of its own, the array buffers shared by all of
them, so the data never passes through the client that asked. The engine thread waits
(bounded) for every target's reply; the connections live on the reactor thread.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from twisted.python.failure import Failure

from ..core.connection import ConnectionInfo, format_address
from ..core.reactors import OneShotFactory, tls_client_options, tls_wrapped
from ..core.transport import FrameProtocol
from ..core.wire import Channel, Message
from ..errors import ConnectionRefused, KernelDied, KernelTimeout


class PeerPush(FrameProtocol):
    """One connection that hands one pickled value to another kernel, then closes."""

    #: A TCP or TLS transport once connected.
    transport: Any

    def __init__(self, info: ConnectionInfo, reactor: Any, payload: bytes, buffers: list) -> None:
        super().__init__(Channel(info.key, sign_buffers=info.sign_buffers), reactor)
        self.name = format_address(info.reachable_address)
        self.payload = payload
        self.buffers = buffers
        self.done: Future[str] = Future()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.send("connect_request", {"nonce": self.channel.nonce})

    def message_received(self, message: Message) -> None:
        if message.type == "connect_reply":
            self.channel.peer_nonce = message.content["nonce"]
            self.send("push_request", {}, self.payload, self.buffers, id=1)
            return
        if message.type == "push_reply":
            if message.content.get("status") == "ok":
                self.done.set_result(self.name)
            else:
                error = message.content.get("error", {})
                self.done.set_exception(
                    KernelDied(f"{self.name} refused the value: {error.get('evalue')}")
                )
            self.close()

    def alert_received(self, text: str) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionRefused(text))
        self.transport.abortConnection()

    def connection_closed(self, reason: Failure | None) -> None:
        if not self.done.done():
            self.done.set_exception(KernelDied(f"lost kernel {self.name} before it replied"))


def push_to_kernels(
    reactor: Any, targets: list[dict[str, Any]], payload: bytes, buffers: list, timeout: float
) -> list[str]:
    """Push one pickled ``{name: value}`` to each target kernel; return their addresses.

    Call from a thread other than the reactor's. Raises RuntimeError naming every
    target that did not take the value, after all have answered or ``timeout`` passed.
    """
    peers = [PeerPush(ConnectionInfo.from_dict(t), reactor, payload, buffers) for t in targets]

    def connect(peer: PeerPush, info: ConnectionInfo) -> None:
        def failed(reason: Failure) -> None:
            if not peer.done.done():
                peer.done.set_exception(
                    KernelDied(f"cannot reach kernel {peer.name}: {reason.getErrorMessage()}")
                )

        factory = OneShotFactory(peer, failed)
        if info.tls:
            options = tls_client_options(info.tls_certificate)
            factory = tls_wrapped(reactor, factory, options, client=True)
        reactor.connectTCP(*info.reachable_address, factory, timeout=timeout)

    for peer, target in zip(peers, targets, strict=True):
        reactor.callFromThread(connect, peer, ConnectionInfo.from_dict(target))
    delivered, failures = [], []
    for peer in peers:
        try:
            delivered.append(peer.done.result(timeout))
        except FutureTimeout:
            failures.append(str(KernelTimeout(f"{peer.name} did not take it within {timeout} s")))
            reactor.callFromThread(peer.transport.abortConnection) if peer.open else None
        except Exception as e:
            failures.append(str(e))
    if failures:
        raise RuntimeError("copy failed: " + "; ".join(failures))
    return delivered
