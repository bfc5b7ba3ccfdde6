"""Socket-free: alerts, the one frame a peer without the key can send, and TLS
spoken to a plain kernel. What a peer says is logged escaped, cut short and once,
and ends its connection."""

from __future__ import annotations

import logging

import pytest
from protocol_support import alert_sent, connect, kernel_service
from twisted.internet.testing import MemoryReactorClock, StringTransport

from ipython_parallel_kernel.client.kernel import KernelClientProtocol
from ipython_parallel_kernel.core.transport import SHOWN_TEXT
from ipython_parallel_kernel.core.wire import Channel, encode_alert
from ipython_parallel_kernel.errors import ConnectionRefused
from ipython_parallel_kernel.kernel.events import BURST_WINDOW

#: What a hostile peer would like a terminal showing the log to do: clear it, retitle it.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\r\nfake log line\u202e" + "A" * 60_000
KERNEL_LOG = "ipython_parallel_kernel.kernel"


def test_alert_from_a_client_is_logged_once_escaped_and_ends_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A thousand alerts in one read: one log line, no raw control characters, a few
    hundred characters long; the connection is aborted and nothing more is read."""
    service = kernel_service()
    protocol, transport = connect(service)
    with caplog.at_level(logging.WARNING, KERNEL_LOG):
        protocol.dataReceived(encode_alert(HOSTILE) * 1000)
        protocol.dataReceived(encode_alert(HOSTILE))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    (line,) = lines
    assert "sent an alert" in line
    assert line.isprintable() and len(line) < SHOWN_TEXT + 200
    assert "\\x1b[2J" in line and "\\u202e" in line and "more characters" in line
    assert transport.disconnected
    assert not service.waiting


def test_alerts_on_many_connections_cost_two_log_lines_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fifty connections each sending an alert: the first is logged, the others counted
    and reported in one line when the window closes."""
    service = kernel_service()
    with caplog.at_level(logging.WARNING, KERNEL_LOG):
        for i in range(50):
            protocol, _ = connect(service, port=40000 + i)
            protocol.dataReceived(encode_alert(HOSTILE))
        service.reactor.advance(BURST_WINDOW)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "sent an alert" in lines[0]
    assert lines[1] == f"... and 49 more alerts from clients in the last {BURST_WINDOW:g} s"


def test_client_shows_a_kernel_alert_escaped_and_cut_short() -> None:
    """Whatever answers on a kernel's port cannot write control characters or 64 KB of
    text into the user's error message."""
    clock = MemoryReactorClock()
    protocol = KernelClientProtocol(Channel("k"), clock, "127.0.0.1:10105", heartbeat=0)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(encode_alert(HOSTILE))
    with pytest.raises(ConnectionRefused) as info:
        protocol.ready.result(0)
    message = str(info.value)
    assert message.isprintable() and len(message) < SHOWN_TEXT + 100
    assert message.startswith("\\x1b[2J")


def test_plain_kernel_answers_a_tls_hello_with_an_alert_naming_tls() -> None:
    """A TLS ClientHello on a plain kernel gets an alert saying the kernel does not serve
    TLS, not a signature error."""
    service = kernel_service()
    protocol, transport = connect(service)
    client_hello = bytes.fromhex("16030100f4010000f00303") + bytes(240)
    protocol.dataReceived(client_hello)
    alert = alert_sent(transport)
    assert alert is not None
    assert alert.startswith("kernel 127.0.0.1:10105 does not serve TLS, but the client's")
    assert transport.write_closed
