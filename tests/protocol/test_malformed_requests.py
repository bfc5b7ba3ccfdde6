"""Socket-free: a request whose fields do not match its declaration in ``core.messages``
is answered with an error naming the field, and the connection keeps being served."""

from __future__ import annotations

from typing import Any

from protocol_support import KEY, TCPStringTransport, connect, kernel_service

from ipython_parallel_kernel.core.wire import Channel, Message
from ipython_parallel_kernel.kernel.server import KernelProtocol


class Client:
    """The client end of one authenticated connection, speaking raw messages."""

    def __init__(self) -> None:
        self.service = kernel_service()
        self.protocol, self.transport = connect(self.service)
        self.channel = Channel(KEY)
        self.decoder = self.channel.decoder()
        self.ids = iter(range(1, 1000))
        self.send("connect_request", {"nonce": self.channel.nonce}, id=0)
        (reply,) = self.replies()
        self.channel.peer_nonce = reply.content["nonce"]

    def send(self, msg_type: str, content: Any, id: int | None = None) -> None:
        frame = self.channel.seal(msg_type, content, id=next(self.ids) if id is None else id)
        self.protocol.dataReceived(b"".join(bytes(part) for part in frame))

    def replies(self) -> list[Message]:
        data = self.transport.value()
        self.transport.clear()
        return self.decoder.feed(data)

    def ask(self, msg_type: str, content: Any) -> Message:
        self.send(msg_type, content)
        (reply,) = self.replies()
        return reply


def served(protocol: KernelProtocol, transport: TCPStringTransport) -> bool:
    return protocol.open and not transport.write_closed and not transport.disconnecting


def test_a_malformed_field_is_an_error_reply_naming_it_and_the_kernel_keeps_serving() -> None:
    """allow_request with a number for its network gets a TypeError naming 'network';
    the same connection then gets its ping and a valid allow answered."""
    client = Client()
    reply = client.ask("allow_request", {"network": 5})
    assert reply.type == "allow_reply"
    assert reply.content["status"] == "error"
    assert reply.content["error"]["ename"] == "TypeError"
    assert reply.content["error"]["evalue"] == (
        "allow_request: field 'network' must be str, got int"
    )
    assert client.ask("ping_request", {}).content == {"status": "ok"}
    assert client.ask("allow_request", {"network": "10.0.0.0/8"}).content["status"] == "ok"
    assert served(client.protocol, client.transport)


def test_a_malformed_queued_request_is_refused_before_it_reaches_the_engine() -> None:
    """pull_request with a number among its names and execute_request without source
    are answered at once, and nothing is queued on the engine."""
    client = Client()
    pull = client.ask("pull_request", {"names": ["a", 1]})
    assert pull.content["error"]["evalue"] == (
        "pull_request: field 'names' must be list[str], got list"
    )
    execute = client.ask("execute_request", {"stream": True})
    assert execute.content["error"]["evalue"] == "execute_request: field 'source' is required"
    assert client.service.engine.queued == 0
    assert served(client.protocol, client.transport)


def test_unknown_verbs_are_error_replies() -> None:
    """A verb no declaration names, the handshake repeated, or a method's name as a verb
    is each answered with UnknownRequest, and the connection kept."""
    client = Client()
    for msg_type in ("greet_request", "connect_request", "__init___request", "status"):
        unknown = client.ask(msg_type, {})
        assert unknown.content["error"]["ename"] == "UnknownRequest"
    assert client.ask("status_request", {}).content["status"] == "ok"
    assert served(client.protocol, client.transport)
