"""Socket-free: the notices a kernel sends unasked are checked on arrival at the client;
published data merges into its request's result, and a notice that does not match its
declaration is logged and dropped without harming the request."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from ipython_parallel_kernel.client.kernel import KernelClientProtocol
from ipython_parallel_kernel.core import messages, serialize
from ipython_parallel_kernel.core.wire import Channel, Message

CLIENT_LOG = "ipython_parallel_kernel.client.kernel"


def connected_client() -> KernelClientProtocol:
    """A client protocol past its handshake, on a StringTransport."""
    protocol = KernelClientProtocol(Channel("k"), MemoryReactorClock(), "127.0.0.1:10105", 0)
    protocol.makeConnection(StringTransport())
    protocol.ready.set_result({})
    return protocol


def data_pub(request_id: int, content: Any, payload: bytes) -> Message:
    """A data_pub notice for request ``request_id``, as the client decodes one."""
    return Message({"type": "data_pub", "id": request_id}, content, payload)


def test_published_data_merges_and_bad_notices_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two publishes merge into ar.data; a malformed one and an unpicklable one are
    logged and leave it as it was; the reply still completes the result."""
    protocol = connected_client()
    ar = protocol.request("apply_request", {}, lambda message: "value", "apply")
    first, _ = serialize.dumps({"a": 1, "b": 2})
    second, _ = serialize.dumps({"a": 3})
    protocol.message_received(data_pub(1, {"keys": ["a", "b"]}, first))
    protocol.message_received(data_pub(1, {"keys": ["a"]}, second))
    assert ar.data == {"a": 3, "b": 2} and not ar.done()
    with caplog.at_level(logging.WARNING, CLIENT_LOG):
        protocol.message_received(data_pub(1, {"keys": "a"}, first))
        protocol.message_received(data_pub(1, {"keys": ["a"]}, b"not a pickle"))
        protocol.message_received(data_pub(1, {"keys": []}, serialize.dumps([1])[0]))
    assert ar.data == {"a": 3, "b": 2}
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and all("dropped a data_pub notice" in line for line in lines)
    assert "field 'keys' must be list[str]" in lines[0] and "must be a dict" in lines[2]
    protocol.message_received(Message({"type": "apply_reply", "id": 1}, {"status": "ok"}))
    assert ar.result(0) == "value" and ar.data == {"a": 3, "b": 2}


def test_every_notice_is_declared_and_listed_in_the_docstring() -> None:
    """NOTICES and the module docstring's notice table name the same three messages;
    data_pub carries a payload and checks its keys."""
    table = re.findall(r"^(\w+) +\w+\??: ", messages.__doc__ or "", re.MULTILINE)
    assert set(table) == set(messages.NOTICES) == {"stream", "data_pub", "shutdown_notice"}
    assert messages.DATA_PUB.payload and not messages.NOTICES["stream"].payload
    assert messages.DATA_PUB.build(keys=["a"]) == {"keys": ["a"]}
    with pytest.raises(TypeError, match="data_pub: field 'keys' is required"):
        messages.DATA_PUB.validate({})
    assert messages.NOTICES["shutdown_notice"].validate({}) == {"reason": "the kernel shut down"}
