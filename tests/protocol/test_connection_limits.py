"""Socket-free: what a connection that never authenticates can cost a kernel, in time
and descriptors: handshake deadline, the cap on waiting connections, bounded lingering."""

from __future__ import annotations

from protocol_support import alert_sent, connect, hello, kernel_service

from ipython_parallel_kernel.core.transport import MAX_LINGERING, REFUSAL_LINGER
from ipython_parallel_kernel.kernel.server import HANDSHAKE_TIMEOUT


def test_silent_connection_is_closed_with_an_alert_at_the_deadline() -> None:
    """A connection that sends nothing is refused when handshake_timeout passes, not before."""
    service = kernel_service(handshake_timeout=3.0)
    clock = service.reactor
    _, transport = connect(service)
    clock.advance(2.9)
    assert transport.value() == b"" and not transport.write_closed
    clock.advance(0.2)
    assert alert_sent(transport) == (
        "kernel 127.0.0.1:10105 closed the connection: no valid connect_request within 3 s"
    )
    assert transport.write_closed
    assert not service.waiting


def test_an_authenticated_connection_outlives_the_deadline() -> None:
    """A client that greets in time is answered, and kept long after the deadline."""
    service = kernel_service()
    protocol, transport = connect(service)
    protocol.dataReceived(hello())
    assert protocol.greeted
    service.reactor.advance(10 * HANDSHAKE_TIMEOUT)
    assert protocol.open and not transport.write_closed and not transport.disconnecting
    assert b"connect_reply" in transport.value()
    assert not service.waiting


def test_past_the_cap_the_oldest_waiting_connection_is_closed() -> None:
    """With max_unauthenticated=3, a fourth waiting connection closes the first, which is
    told why; the newer ones keep waiting."""
    service = kernel_service(max_unauthenticated=3)
    connections = [connect(service, port=50000 + i) for i in range(4)]
    (_, first), *rest = connections
    alert = alert_sent(first)
    assert alert is not None and "before it authenticated" in alert and "3 newer" in alert
    assert first.write_closed
    assert all(alert_sent(t) is None and not t.write_closed for _, t in rest)
    assert len(service.waiting) == 3
    newest, _ = rest[-1]
    newest.dataReceived(hello())
    assert newest.greeted and len(service.waiting) == 2


def test_refused_connections_linger_briefly_and_boundedly() -> None:
    """Refused connections (a host not allowed) linger at most MAX_LINGERING at once, the
    oldest cut off first, and none longer than REFUSAL_LINGER."""
    service = kernel_service()
    transports = [connect(service, "127.0.0.2", 40000 + i)[1] for i in range(MAX_LINGERING + 8)]
    assert all(
        alert_sent(t) == "127.0.0.2 is not allowed by kernel 127.0.0.1:10105" for t in transports
    )
    assert all(t.write_closed for t in transports)
    assert len(service.lingering) == MAX_LINGERING
    assert all(t.disconnected for t in transports[:8])
    assert not any(t.disconnected for t in transports[8:])
    service.reactor.advance(REFUSAL_LINGER)
    assert all(t.disconnected for t in transports)
    assert len(service.lingering) == 0


def test_a_refused_peer_that_hangs_up_is_forgotten() -> None:
    """When a refused peer closes its end, its linger timer is cancelled at once."""
    service = kernel_service()
    protocol, transport = connect(service, "127.0.0.2")
    assert len(service.lingering) == 1
    protocol.connectionLost(None)
    assert len(service.lingering) == 0
    assert not transport.disconnected
    assert not [c for c in service.reactor.getDelayedCalls() if c.func == service.lingering.cut]
