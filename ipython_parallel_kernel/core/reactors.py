"""Reactors and TLS: a private reactor for a thread of its own, TLS wrapping that
recognises a peer speaking plain frames, TLS options from a connection file, and a
factory that connects one given protocol.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from .transport import alert_text, shown
from .wire import MAGIC, encode_alert


def private_reactor() -> Any:
    """A new reactor of the platform's usual kind, not installed as Twisted's global one.

    For a thread of its own where the global reactor is someone else's: a GUI kernel's
    network (the global reactor is the toolkit's), a client inside a kernel.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor as Reactor
    except ImportError:
        from twisted.internet.selectreactor import SelectReactor as Reactor
    return Reactor()


def tls_wrapped(
    reactor: Any,
    factory: Any,
    options: Any,
    *,
    client: bool,
    plain_refusal: Callable[[], str] | None = None,
) -> Any:
    """``factory`` behind TLS whose write batching runs on ``reactor``.

    ``reactor.listenSSL``/``connectSSL`` batch on Twisted's global reactor, which in a
    GUI kernel is the toolkit's, not the one serving the connection: wrap explicitly and
    use ``listenTCP``/``connectTCP``.

    A peer whose first bytes are this protocol's plain frames does not speak TLS: the
    connection is closed at once, after an alert with ``plain_refusal()``'s text when
    given, and ``tls_failure`` reports it as ``"plain"``.
    """
    from twisted.protocols.tls import TLSMemoryBIOFactory

    wrapping: Any = TLSMemoryBIOFactory(options, client, factory, clock=reactor)
    wrapping.protocol = _plain_aware_tls()
    wrapping.plain_refusal = plain_refusal
    return wrapping


@functools.cache
def _plain_aware_tls() -> type:
    # Built on first use: importing Twisted's TLS loads OpenSSL, which plain kernels and
    # clients never need.
    from twisted.protocols.tls import BufferingTLSTransport

    class PlainAwareTLS(BufferingTLSTransport):
        """TLS that recognises a peer speaking our plain protocol instead."""

        factory: Any
        transport: Any
        peer_speaks_plain = False
        #: The text of the plain alert the peer sent, if it sent one.
        plain_alert: str | None = None
        _heard = False

        def dataReceived(self, data: bytes) -> None:
            first, self._heard = not self._heard, True
            if first and data[:3] == MAGIC[:3]:
                self.peer_speaks_plain = True
                self.plain_alert = alert_text(data)
                refusal = self.factory.plain_refusal
                if refusal is not None:
                    self.transport.write(encode_alert(refusal()))
                self.transport.loseConnection()
                return
            super().dataReceived(data)

    return PlainAwareTLS


class TLSFailure(NamedTuple):
    """Why TLS failed. ``kind`` is ``"plain"``: the peer does not speak TLS, and
    ``detail`` is the text of the alert it sent in plain, if any (escaped, cut short);
    ``"certificate"``: its certificate was refused; or ``"handshake"``. For these two,
    ``detail`` is OpenSSL's reason."""

    kind: str
    detail: str


def tls_failure(transport: Any, reason: Failure | None) -> TLSFailure | None:
    """What TLS had to do with losing the connection of ``transport``; None if nothing."""
    if getattr(transport, "peer_speaks_plain", False):
        alert = transport.plain_alert
        return TLSFailure("plain", "" if alert is None else shown(alert))
    if reason is None or not reason.check("OpenSSL.SSL.Error"):
        return None
    args = reason.value.args if reason.value is not None else ()
    errors = args[0] if args else []
    detail = ", ".join(e[-1] for e in errors if isinstance(e, tuple)) or str(reason.value)
    kind = "certificate" if "certificate verify failed" in detail else "handshake"
    return TLSFailure(kind, detail)


def tls_client_options(certificate_pem: str | None) -> Any:
    """TLS options that trust exactly the kernel certificate named in a connection file."""
    from twisted.internet import ssl

    from ..errors import ConnectionFailed

    if not certificate_pem:
        raise ConnectionFailed("the kernel serves TLS but its connection file has no certificate")
    certificate = ssl.Certificate.loadPEM(certificate_pem.encode())
    return ssl.CertificateOptions(
        verify=True, caCerts=[certificate.original], requireCertificate=True
    )


class OneShotFactory(ClientFactory):
    """Connects one given protocol; ``on_failure(reason)`` if the connection fails."""

    def __init__(self, protocol: Protocol, on_failure: Any) -> None:
        self.protocol_instance = protocol
        self.on_failure = on_failure

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.protocol_instance

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.on_failure(reason)
