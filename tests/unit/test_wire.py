"""Unit tests for the wire format: framing, signing, replay window, alerts, limits."""

from __future__ import annotations

import contextlib
import hmac
import json
import struct
import tracemalloc
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipython_parallel_kernel.core import wire
from ipython_parallel_kernel.core.wire import (
    MAC_LEN,
    MAGIC,
    MAX_BUFFERS,
    PREAUTH_MAX_HEAD,
    Channel,
    FrameDecoder,
    Message,
    encode_alert,
)
from ipython_parallel_kernel.errors import (
    FrameTooLarge,
    InvalidSignature,
    MalformedFrame,
    ReplayedMessage,
    UnsignedMessage,
    WireError,
)

KEY = b"unit-test-key"
PREFIX = struct.Struct(">4sBBHIQ")  # the layout documented in wire.py's docstring
MAX_SMALL = 4096
# Enough zeros to complete any body a corrupted prefix can announce under MAX_SMALL.
PADDING = bytes(8 * MAX_BUFFERS + MAX_SMALL + 2 * MAC_LEN + PREFIX.size)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
contents = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
payloads = st.binary(max_size=2000)
buffer_lists = st.lists(st.binary(max_size=300), max_size=5)


def pair(**options: object) -> tuple[Channel, Channel]:
    """A sender and a receiver sharing KEY; the sender already knows the receiver's nonce."""
    sender, receiver = Channel(KEY, **options), Channel(KEY, **options)  # type: ignore[arg-type]
    sender.peer_nonce = receiver.nonce
    return sender, receiver


def frame(
    channel: Channel, msg_type: str = "ping", content: dict | None = None, **kw: object
) -> bytes:
    """One sealed frame as contiguous bytes."""
    return b"".join(bytes(memoryview(p).cast("B")) for p in channel.seal(msg_type, content, **kw))  # type: ignore[arg-type]


def summary(message: Message) -> tuple:
    """What a message carries, as comparable plain data."""
    return (
        message.header,
        message.content,
        bytes(message.payload),
        [bytes(b) for b in message.buffers],
    )


def feed_chunks(decoder: FrameDecoder, data: bytes, sizes: Iterable[int]) -> list[Message]:
    """Feed ``data`` in chunks of the given sizes (cycled), collecting messages."""
    sizes = list(sizes)
    out: list[Message] = []
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out += decoder.feed(data[pos : pos + n])
        pos += n
        i += 1
    return out


def announcement(channel: Channel, payload_len: int = 0, sizes: Iterable[int] = ()) -> bytes:
    """Prefix, head and head MAC of ``channel``'s first frame, announcing these lengths."""
    sizes = list(sizes)
    head = json.dumps([{"type": "push_request", "session": channel.peer_nonce, "seq": 1}, {}])
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, len(sizes), len(head), payload_len)
    prefix += b"".join(struct.pack(">Q", size) for size in sizes)
    mac = channel.mac()
    mac.update(prefix + head.encode())
    return prefix + head.encode() + mac.digest()


def receive_into(decoder: FrameDecoder, data: bytes, step: int) -> list[Message]:
    """Simulate a socket: recv_into buffer_to_fill() when it offers memory, else feed()."""
    out: list[Message] = []
    pos = 0
    while pos < len(data):
        target = decoder.buffer_to_fill()
        if target is None:
            out += decoder.feed(data[pos : pos + step])
            pos += step
        else:
            n = min(target.nbytes, step, len(data) - pos)
            target[:n] = data[pos : pos + n]
            pos += n
            out += decoder.filled(n)
    return out


def receiver_of_copy(data: bytes, receiver: Channel) -> list[Message]:
    """Decode ``data`` with a fresh channel that has ``receiver``'s key and nonce."""
    twin = Channel(receiver.key)
    twin.nonce = receiver.nonce
    return twin.decoder().feed(data)


def rich_frame(sender: Channel) -> bytes:
    """A frame with content, payload, a numpy buffer and zero-length buffers."""
    array = np.arange(1000, dtype=np.float64)
    return frame(
        sender,
        "execute_request",
        {"source": "a = 5", "nested": [1, {"x": None}]},
        payload=b"pickle-bytes",
        buffers=[b"", array, b"abc", b""],
        id=7,
    )


def corrupted_outcome(receiver: Channel, data: bytes) -> tuple[list[Message], WireError | None]:
    """Messages and the WireError from feeding ``data`` then PADDING to a fresh decoder."""
    decoder = receiver.decoder()
    got: list[Message] = []
    try:
        got += decoder.feed(data)
        got += decoder.feed(PADDING)
    except WireError as e:
        return got, e
    return got, None


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_round_trip_header_content_payload_and_buffers() -> None:
    """Sealing then decoding returns the same header, content, payload and buffers."""
    sender, receiver = pair()
    array = np.arange(1000, dtype=np.float64)
    [message] = receiver.decoder().feed(rich_frame(sender))
    assert message.type == "execute_request"
    assert message.id == 7
    assert message.header["seq"] == 1
    assert message.header["session"] == receiver.nonce
    assert message.content == {"source": "a = 5", "nested": [1, {"x": None}]}
    assert bytes(message.payload) == b"pickle-bytes"
    assert [b.nbytes for b in message.buffers] == [0, array.nbytes, 3, 0]
    assert np.array_equal(np.frombuffer(message.buffers[1], dtype=np.float64), array)
    assert bytes(message.buffers[2]) == b"abc"


def test_decoded_buffers_are_writable() -> None:
    """Buffers arrive in fresh writable memory, so arrays rebuilt on them are writable."""
    sender, receiver = pair()
    [message] = receiver.decoder().feed(frame(sender, buffers=[b"x" * 100, bytes(2 * 1024**2)]))
    assert all(not b.readonly for b in message.buffers)
    message.buffers[1][0] = 7
    assert message.buffers[1][0] == 7


def test_message_without_optional_parts() -> None:
    """A message with no content, payload or buffers decodes with empty ones."""
    sender, receiver = pair()
    [message] = receiver.decoder().feed(frame(sender, "status_request"))
    assert (message.content, bytes(message.payload), message.buffers) == ({}, b"", [])
    assert message.id == 0


def test_string_key_equals_its_ascii_bytes() -> None:
    """A hex string key (as in connection files) signs like its ASCII bytes."""
    key = wire.new_key()
    sender, receiver = Channel(key), Channel(key.encode("ascii"))
    assert len(receiver.decoder().feed(frame(sender))) == 1


def test_one_byte_at_a_time() -> None:
    """A frame fed one byte per call decodes exactly like the whole frame."""
    sender, receiver = pair()
    data = rich_frame(sender)
    decoder = receiver.decoder()
    out: list[Message] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    [expected] = receiver_of_copy(data, receiver)
    assert [summary(m) for m in out] == [summary(expected)]


@settings(max_examples=60, deadline=None)
@given(
    content=contents,
    payload=payloads,
    buffers=buffer_lists,
    sizes=st.lists(st.integers(1, 97), min_size=1),
)
def test_random_messages_in_random_chunks(
    content: dict, payload: bytes, buffers: list[bytes], sizes: list[int]
) -> None:
    """Any content, payload and buffers survive any chunking of the frame."""
    sender, receiver = pair()
    data = frame(sender, "t", content, payload=payload, buffers=buffers)
    [message] = feed_chunks(receiver.decoder(), data, sizes)
    assert message.content == content
    assert bytes(message.payload) == payload
    assert [bytes(b) for b in message.buffers] == buffers


@settings(max_examples=40, deadline=None)
@given(payload=payloads, buffers=buffer_lists, sizes=st.lists(st.integers(1, 300), min_size=1))
def test_several_frames_in_random_chunks(
    payload: bytes, buffers: list[bytes], sizes: list[int]
) -> None:
    """Consecutive frames split at arbitrary points come out whole and in order."""
    sender, receiver = pair()
    data = b"".join(
        frame(sender, "t", {"i": i}, payload=payload, buffers=buffers) for i in range(4)
    )
    out = feed_chunks(receiver.decoder(), data, sizes)
    assert [m.content["i"] for m in out] == [0, 1, 2, 3]
    assert all(bytes(m.payload) == payload for m in out)
    assert all([bytes(b) for b in m.buffers] == buffers for m in out)


def test_several_frames_in_one_feed() -> None:
    """One feed holding five frames returns five messages in sequence order."""
    sender, receiver = pair()
    data = b"".join(frame(sender, "t", {"i": i}, buffers=[bytes([i]) * i]) for i in range(5))
    out = receiver.decoder().feed(data)
    assert [m.content["i"] for m in out] == [0, 1, 2, 3, 4]
    assert [m.header["seq"] for m in out] == [1, 2, 3, 4, 5]
    assert [bytes(m.buffers[0]) for m in out] == [bytes([i]) * i for i in range(5)]


@settings(max_examples=40, deadline=None)
@given(payload=payloads, buffers=buffer_lists, step=st.integers(1, 200))
def test_buffer_to_fill_path_matches_feed(payload: bytes, buffers: list[bytes], step: int) -> None:
    """Receiving buffers through buffer_to_fill()/filled(n) gives the same messages as feed()."""
    sender, receiver = pair()
    data = b"".join(
        frame(sender, "t", {"i": i}, payload=payload, buffers=buffers) for i in range(3)
    )
    via_fill = receive_into(receiver.decoder(), data, step)
    via_feed = receiver_of_copy(data, receiver)
    assert [summary(m) for m in via_fill] == [summary(m) for m in via_feed]
    assert len(via_fill) == 3


def test_buffer_to_fill_is_none_outside_a_buffer() -> None:
    """buffer_to_fill() offers memory only while a buffer is being received."""
    sender, receiver = pair()
    data = frame(sender, buffers=[b"0123456789"])
    decoder = receiver.decoder()
    assert decoder.buffer_to_fill() is None
    assert decoder.feed(data[:-10]) == []
    target = decoder.buffer_to_fill()
    assert target is not None and target.nbytes == 10
    target[:4] = b"0123"
    assert decoder.filled(4) == []
    assert decoder.buffer_to_fill().nbytes == 6  # type: ignore[union-attr]
    decoder.buffer_to_fill()[:6] = b"456789"  # type: ignore[index]
    [message] = decoder.filled(6)
    assert bytes(message.buffers[0]) == b"0123456789"
    assert decoder.buffer_to_fill() is None


def test_feed_copies_what_it_keeps_from_a_reused_buffer() -> None:
    """Feeding from one reused receive buffer (as recv_into loops do) still decodes correctly."""
    sender, receiver = pair()
    data = frame(sender, "t", {"a": 1}, payload=b"payload")
    scratch = bytearray(4096)
    decoder = receiver.decoder()
    out: list[Message] = []
    for start, end in ((0, PREFIX.size), (PREFIX.size, len(data))):
        scratch[:] = bytes(len(scratch))
        scratch[: end - start] = data[start:end]
        out += decoder.feed(memoryview(scratch)[: end - start])
    scratch[:] = bytes(len(scratch))
    assert [(m.content, bytes(m.payload)) for m in out] == [({"a": 1}, b"payload")]


def test_many_zero_length_buffers() -> None:
    """A frame with many (but at most MAX_BUFFERS) zero-length buffers decodes."""
    sender, receiver = pair()
    data = frame(sender, buffers=[b""] * 1000)
    [message] = receiver.decoder().feed(data)
    assert [b.nbytes for b in message.buffers] == [0] * 1000


def test_flipped_bit_in_signed_part_is_refused() -> None:
    """Any single bit flip in prefix, head, payload or their MACs is a refusal, never a message."""
    sender, receiver = pair(max_frame=MAX_SMALL)
    data = frame(sender, "t", {"k": "v"}, payload=b"0123456789", buffers=[b"abcd", b"efgh"])
    signed_end = len(data) - 8  # the two unsigned buffers follow the mac
    prefix_end = PREFIX.size + 16
    for bit in range(signed_end * 8):
        twin = Channel(KEY, max_frame=MAX_SMALL)
        twin.nonce = receiver.nonce
        got, error = corrupted_outcome(twin, flip(data, bit))
        assert got == [], f"bit {bit} gave a message"
        if bit < prefix_end * 8:
            allowed: tuple[type[WireError], ...] = (
                InvalidSignature,
                MalformedFrame,
                UnsignedMessage,
                FrameTooLarge,
            )
        else:
            allowed = (InvalidSignature,)
        assert isinstance(error, allowed), f"bit {bit}: {error!r}"


def test_flipped_bit_in_a_small_frame_with_payload_is_refused() -> None:
    """A frame of head and small payload, decoded in one step when it arrives whole, is
    refused for any single bit flip in its head, payload or their MACs."""
    sender, receiver = pair(max_frame=MAX_SMALL)
    data = frame(sender, "t", {"k": "v"}, payload=b"0123456789")
    twin = Channel(KEY, max_frame=MAX_SMALL)
    twin.nonce = receiver.nonce
    assert [m.payload for m in twin.decoder().feed(data)] == [b"0123456789"]
    for bit in range((PREFIX.size + 16) * 8, len(data) * 8):
        twin = Channel(KEY, max_frame=MAX_SMALL)
        twin.nonce = receiver.nonce
        got, error = corrupted_outcome(twin, flip(data, bit))
        assert got == [], f"bit {bit} gave a message"
        assert isinstance(error, InvalidSignature), f"bit {bit}: {error!r}"


def test_flipped_bit_anywhere_with_signed_buffers() -> None:
    """With sign_buffers, a bit flip in buffers or tail is an InvalidSignature too."""
    sender, receiver = pair(sign_buffers=True, max_frame=MAX_SMALL)
    data = frame(sender, "t", payload=b"xy", buffers=[b"abcd", b"efgh"])
    start = len(data) - 8 - MAC_LEN
    for bit in range(start * 8, len(data) * 8):
        twin = Channel(KEY, max_frame=MAX_SMALL)
        twin.nonce = receiver.nonce
        got, error = corrupted_outcome(twin, flip(data, bit))
        assert got == []
        assert isinstance(error, InvalidSignature), f"bit {bit}: {error!r}"


def test_signed_buffers_round_trip() -> None:
    """Frames between two sign_buffers channels decode normally, payload and buffers intact."""
    sender, receiver = pair(sign_buffers=True)
    [message] = receiver.decoder().feed(frame(sender, payload=b"p", buffers=[b"abc", b""]))
    assert bytes(message.payload) == b"p"
    assert [bytes(b) for b in message.buffers] == [b"abc", b""]


def test_tampered_signed_buffer_is_invalid_signature() -> None:
    """Changing one byte of a signed buffer raises InvalidSignature."""
    sender, receiver = pair(sign_buffers=True)
    data = bytearray(frame(sender, buffers=[b"important"]))
    data[-MAC_LEN - 1] ^= 0xFF
    with pytest.raises(InvalidSignature):
        receiver.decoder().feed(bytes(data))


def test_sign_buffers_refuses_unsigned_buffers_before_allocating_them() -> None:
    """A sign_buffers channel refuses a frame with unsigned buffers once its head is read."""
    sender = Channel(KEY)
    receiver = Channel(KEY, sign_buffers=True)
    sender.peer_nonce = receiver.nonce
    pieces = sender.seal("push_request", {}, b"p", [bytes(2 * 1024**2)])
    decoder = receiver.decoder()
    with pytest.raises(UnsignedMessage, match="must be signed"):
        decoder.feed(b"".join(bytes(p) for p in pieces[:3]))
    assert decoder.buffer_to_fill() is None


def test_sign_buffers_allows_frames_without_buffers() -> None:
    """A sign_buffers channel accepts a frame that has no buffers at all from any peer."""
    sender = Channel(KEY)
    receiver = Channel(KEY, sign_buffers=True)
    assert len(receiver.decoder().feed(frame(sender, payload=b"p"))) == 1


def test_a_request_without_payload_or_buffers_carries_one_mac() -> None:
    """An execute request is prefix, head and one MAC: the hot path signs once."""
    sender, receiver = pair()
    pieces = sender.seal("execute_request", {"source": "a=5"}, id=1)
    assert [len(p) for p in pieces] == [PREFIX.size, len(pieces[1]), MAC_LEN]
    assert len(receiver.decoder().feed(b"".join(pieces))) == 1


def test_head_is_the_json_encoding_of_header_and_content() -> None:
    """The channel's own JSON encoder writes what ``encode_json`` writes: compact,
    non-ASCII as is, floats and NaN as ``json`` writes them."""
    sender, _ = pair()
    content = {"text": "héllo ☃", "x": [1.5, float("nan"), None, True], "n": {"k": -3}}
    head = sender.seal("ping", content, id=4)[1]
    header, decoded = json.loads(bytes(head))
    assert bytes(head) == wire.encode_json([header, content]).encode()
    assert decoded["text"] == content["text"]


def test_circular_content_is_refused_as_before() -> None:
    """Content that contains itself is a ValueError, as with ``json``; the encoder's
    circular-reference check is left clean for the next message."""
    sender, _ = pair()
    content: dict = {}
    content["self"] = content
    for _ in range(2):
        with pytest.raises(ValueError, match="Circular"):
            sender.seal("ping", content)
    assert json.loads(bytes(sender.seal("ping", {"a": [1]})[1]))[1] == {"a": [1]}


def test_head_with_whitespace_around_its_json_is_read() -> None:
    """A head whose JSON has whitespace around it (valid JSON) still decodes."""
    _, receiver = pair()
    head = b" " + json.dumps([{"type": "ping", "session": receiver.nonce, "seq": 1}, {}]).encode()
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, 0, len(head) + 1, 0)
    body = head + b"\n"
    mac = hmac.new(KEY, prefix + body, "sha256").digest()
    [message] = receiver.decoder().feed(prefix + body + mac)
    assert message.type == "ping"


def test_parts_cannot_be_swapped_between_frames() -> None:
    """A payload or signed buffers moved into another frame of the same shape are refused."""
    receiver = Channel(KEY, sign_buffers=True)
    frames = []
    for i, value in enumerate((b"first", b"other")):
        sender = Channel(KEY, sign_buffers=True)
        sender.peer_nonce = receiver.nonce
        pieces = sender.seal("push_request", {"i": i}, value, [value * 2])
        frames.append([bytes(p) for p in pieces])
    a, b = frames
    # pieces: prefix, head, head_mac, payload, payload_mac, buffer, tail
    for mixed, error in (
        (a[:3] + b[3:5] + a[5:], "payload does not match"),
        (a[:5] + b[5:], "buffers do not match"),
    ):
        twin = Channel(KEY, sign_buffers=True)
        twin.nonce = receiver.nonce
        with pytest.raises(InvalidSignature, match=error):
            twin.decoder().feed(b"".join(mixed))


def test_head_is_checked_before_any_payload_byte_arrives() -> None:
    """A wrong-key frame is refused as soon as its head MAC arrives, before its payload."""
    sender = Channel(b"another-key")
    pieces = sender.seal("push_request", {}, bytes(10 * 1024**2))
    with pytest.raises(InvalidSignature):
        Channel(KEY).decoder().feed(b"".join(bytes(p) for p in pieces[:3]))


def test_head_limit_is_small_until_the_peer_is_authenticated() -> None:
    """A first frame's head may not exceed PREAUTH_MAX_HEAD; later heads may, up to max_head."""
    big = {"source": "x" * PREAUTH_MAX_HEAD}
    sender, receiver = pair(max_head=4 * PREAUTH_MAX_HEAD)
    with pytest.raises(FrameTooLarge, match="before the peer is authenticated"):
        receiver.decoder().feed(frame(sender, "execute_request", big))
    sender, receiver = pair(max_head=4 * PREAUTH_MAX_HEAD)
    decoder = receiver.decoder()
    assert len(decoder.feed(frame(sender, "connect_request"))) == 1
    [message] = decoder.feed(frame(sender, "execute_request", big))
    assert message.content == big
    with pytest.raises(FrameTooLarge, match=f"maximum is {4 * PREAUTH_MAX_HEAD}$"):
        decoder.feed(frame(sender, "execute_request", {"source": "x" * 4 * PREAUTH_MAX_HEAD}))


def test_other_protocol_version_is_named_as_such() -> None:
    """A frame of version 1 of the protocol is refused as another version, not a bad MAC."""
    old = PREFIX.pack(b"IPK\x01", 0, MAC_LEN, 0, 10, 0)
    with pytest.raises(MalformedFrame, match="version 1 of the wire protocol"):
        Channel(KEY).decoder().feed(old)


def test_mac_len_zero_is_unsigned_message() -> None:
    """A frame whose prefix announces no signature raises UnsignedMessage."""
    head = b'[{"type":"t","session":null,"seq":1},{}]'
    data = PREFIX.pack(MAGIC, 0, 0, 0, len(head), 0) + head
    with pytest.raises(UnsignedMessage):
        Channel(KEY).decoder().feed(data)


def test_wrong_key_is_invalid_signature() -> None:
    """A frame signed with another key raises InvalidSignature."""
    sender = Channel(b"another-key")
    with pytest.raises(InvalidSignature):
        Channel(KEY).decoder().feed(frame(sender, payload=b"x"))


def test_bad_magic_is_malformed() -> None:
    """Bytes that do not start with the protocol magic raise MalformedFrame."""
    with pytest.raises(MalformedFrame, match="not a frame"):
        Channel(KEY).decoder().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_replayed_frame_is_refused() -> None:
    """Feeding the same frame bytes twice: accepted once, ReplayedMessage the second time."""
    sender, receiver = pair()
    data = frame(sender)
    decoder = receiver.decoder()
    assert len(decoder.feed(data)) == 1
    with pytest.raises(ReplayedMessage):
        decoder.feed(data)


def test_out_of_order_frame_is_refused() -> None:
    """A frame whose seq skips ahead raises ReplayedMessage."""
    sender, receiver = pair()
    frame(sender)
    with pytest.raises(ReplayedMessage, match="out of sequence"):
        receiver.decoder().feed(frame(sender))


def test_first_message_naming_another_connection_is_refused() -> None:
    """A first message whose session is some other nonce raises ReplayedMessage."""
    sender, receiver = Channel(KEY), Channel(KEY)
    sender.peer_nonce = wire.new_nonce()
    with pytest.raises(ReplayedMessage, match="another connection"):
        receiver.decoder().feed(frame(sender))


def test_later_message_naming_another_connection_is_refused() -> None:
    """After the handshake, a message without the receiver's nonce raises ReplayedMessage."""
    sender, receiver = Channel(KEY), Channel(KEY)
    decoder = receiver.decoder()
    assert len(decoder.feed(frame(sender))) == 1  # handshake: session null
    with pytest.raises(ReplayedMessage, match="another connection"):
        decoder.feed(frame(sender))  # still null: belongs to no connection of ours


def test_oversized_prefix_refused_before_the_rest_arrives() -> None:
    """A prefix announcing more than max_frame raises FrameTooLarge on its own."""
    channel = Channel(KEY, max_frame=1024**2)
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, 0, 100, 1024**2)
    with pytest.raises(FrameTooLarge, match="maximum"):
        channel.decoder().feed(prefix)


def test_huge_announcement_is_refused_without_allocating() -> None:
    """A prefix announcing 2**60 bytes fails at once, allocating next to nothing."""
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, 0, 2**31, 2**60)
    decoder = Channel(KEY).decoder()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge):
            decoder.feed(prefix)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_large_allowed_announcement_grows_only_as_bytes_arrive() -> None:
    """An authenticated 3 GiB payload announcement copies nothing onto the heap before its bytes."""
    sender, receiver = pair()
    decoder = receiver.decoder()
    tracemalloc.start()
    try:
        assert decoder.feed(announcement(sender, payload_len=3 * 1024**3) + bytes(4096)) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024**2
    assert decoder.buffer_to_fill().nbytes == 3 * 1024**3 - 4096  # type: ignore[union-attr]


def test_oversized_buffer_sizes_refused_before_body() -> None:
    """Buffer lengths adding up past max_frame raise FrameTooLarge before any body byte."""
    channel = Channel(KEY, max_frame=1024**2)
    data = PREFIX.pack(MAGIC, 0, MAC_LEN, 2, 10, 0) + struct.pack(">QQ", 1024**2, 1)
    with pytest.raises(FrameTooLarge):
        channel.decoder().feed(data)


def test_too_many_buffers_is_frame_too_large() -> None:
    """A prefix announcing more than MAX_BUFFERS buffers raises FrameTooLarge at once."""
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, MAX_BUFFERS + 1, 10, 0)
    with pytest.raises(FrameTooLarge, match="buffers"):
        Channel(KEY).decoder().feed(prefix)


def test_unauthenticated_parts_are_never_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame announcing a big payload and buffer but failing its head MAC allocates neither."""
    calls: list[int] = []
    real = wire.ReceiveBuffer
    monkeypatch.setattr(wire, "ReceiveBuffer", lambda size: calls.append(size) or real(size))
    data = announcement(Channel(b"another-key"), payload_len=2**30, sizes=[2**30])
    with pytest.raises(InvalidSignature):
        Channel(KEY).decoder().feed(data + bytes(4096))
    assert calls == []
    sender, receiver = pair()
    assert receiver.decoder().feed(announcement(sender, payload_len=10)) == []
    assert calls == [10]


@pytest.mark.parametrize("text", ["", "go away", "refused: " + "é" * 500 + " ☃" * 100])
def test_alert_decodes_into_decoder_alert(text: str) -> None:
    """An alert (empty, short, or longer than a prefix) sets decoder.alert to its text."""
    decoder = Channel(KEY).decoder()
    assert decoder.feed(encode_alert(text)) == []
    assert decoder.alert == text


@settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=300), sizes=st.lists(st.integers(1, 40), min_size=1))
def test_alert_in_chunks_then_frame(text: str, sizes: list[int]) -> None:
    """An alert split anywhere is read whole, and a frame after it still decodes."""
    sender, receiver = pair()
    decoder = receiver.decoder()
    out = feed_chunks(decoder, encode_alert(text) + frame(sender, "after"), sizes)
    assert decoder.alert == text
    assert [m.type for m in out] == ["after"]


def test_alert_text_is_truncated_to_the_length_field() -> None:
    """An alert longer than 65535 bytes is cut to what its u16 length can say."""
    decoder = Channel(KEY).decoder()
    decoder.feed(encode_alert("x" * 70000))
    assert decoder.alert == "x" * 65535


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_garbage_only_raises_wire_errors(data: bytes) -> None:
    """Arbitrary bytes either wait for more or raise a WireError; they never yield a message."""
    with contextlib.suppress(WireError):
        assert Channel(KEY, max_frame=MAX_SMALL).decoder().feed(data) == []


@settings(max_examples=200, deadline=None)
@given(
    flags=st.integers(0, 255),
    n_buffers=st.integers(0, 8),
    head_len=st.integers(0, 300),
    payload_len=st.integers(0, 300),
    rest=st.binary(max_size=800),
)
def test_garbage_behind_a_valid_prefix_only_raises_wire_errors(
    flags: int, n_buffers: int, head_len: int, payload_len: int, rest: bytes
) -> None:
    """Random bodies behind a well-formed prefix never yield a message or a non-WireError."""
    data = PREFIX.pack(MAGIC, flags, MAC_LEN, n_buffers, head_len, payload_len) + rest
    with contextlib.suppress(WireError):
        assert Channel(KEY, max_frame=MAX_SMALL).decoder().feed(data) == []


def test_signed_but_deeply_nested_head_is_malformed() -> None:
    """A correctly signed head nested too deeply for the JSON parser raises MalformedFrame."""
    channel = Channel(KEY)
    head = b"[" * 30_000 + b"]" * 30_000
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, 0, len(head), 0)
    mac = channel.mac()
    mac.update(prefix)
    mac.update(head)
    with pytest.raises(MalformedFrame):
        Channel(KEY).decoder().feed(prefix + head + mac.digest())


@pytest.mark.parametrize(
    "head",
    [b"not json", b"5", b'["ab"]', b'[{"type":1},{}]', b'[{"type":"t","seq":1},[]]', b"\xff\xfe"],
)
def test_signed_but_unreadable_head_is_malformed(head: bytes) -> None:
    """A correctly signed head that is not [header-with-type, content-object] is MalformedFrame."""
    channel = Channel(KEY)
    prefix = PREFIX.pack(MAGIC, 0, MAC_LEN, 0, len(head), 0)
    mac = channel.mac()
    mac.update(prefix)
    mac.update(head)
    with pytest.raises(MalformedFrame):
        Channel(KEY).decoder().feed(prefix + head + mac.digest())


def feed_in_64_kib_chunks(decoder: FrameDecoder, data: bytes) -> tuple[list[Message], int]:
    """Feed ``data`` in 64 KiB chunks; return the messages and the peak traced memory."""
    tracemalloc.start()
    try:
        out = feed_chunks(decoder, data, [64 * 1024])
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_64_mib_payload_in_64_kib_chunks_keeps_one_copy() -> None:
    """Feeding a 64 MiB payload in 64 KiB chunks peaks near one copy (no re-concatenation)."""
    size = 64 * 1024**2
    sender, receiver = pair()
    data = frame(sender, payload=bytes(size))
    out, peak = feed_in_64_kib_chunks(receiver.decoder(), data)
    assert len(out) == 1 and memoryview(out[0].payload).nbytes == size
    assert peak < 2.5 * size


def test_64_mib_buffer_in_64_kib_chunks_is_not_copied_through_the_heap() -> None:
    """A 64 MiB buffer fed in 64 KiB chunks lands in its own memory, not in a growing heap copy."""
    size = 64 * 1024**2
    array = np.arange(size // 8, dtype=np.int64)
    sender, receiver = pair()
    data = frame(sender, buffers=[array])
    out, peak = feed_in_64_kib_chunks(receiver.decoder(), data)
    assert np.array_equal(np.frombuffer(out[0].buffers[0], dtype=np.int64), array)
    assert peak < 0.1 * size


def test_closed_decoder_frees_a_partial_frame_and_refuses_more_input() -> None:
    """close() drops what a half-received frame holds and refuses bytes after it."""
    sender, receiver = Channel(b"k"), Channel(b"k")
    decoder = receiver.decoder()
    pieces = sender.seal("push_request", {}, b"p" * 100_000)
    frame = b"".join(bytes(p) for p in pieces)
    decoder.feed(frame[: len(frame) // 2])
    assert decoder.buffer_to_fill() is not None
    decoder.close()
    assert decoder.buffer_to_fill() is None
    with pytest.raises(MalformedFrame, match="after the connection was closed"):
        decoder.feed(frame[len(frame) // 2 :])
