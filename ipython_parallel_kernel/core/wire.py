"""The wire format: framing, HMAC-SHA256 signing and replay protection.

Pure Python, no Twisted: the same code frames bytes for TCP, TLS and tests.

A frame carries a JSON header and content, an optional pickle payload and zero or
more raw buffers (pickle protocol 5 out-of-band buffers, so an array's bytes travel
as they are). Each part is followed by the MAC that covers it, chained to the MAC
before it, so a receiver checks a part before it takes in the next one, and parts
cannot be moved from one frame to another. All integers are big-endian::

    prefix       "IPK" | version u8 (2) | flags u8 | mac_len u8 | n_buffers u16
                 | head_len u32 | payload_len u64 | buffer_len u64 * n_buffers
    head         JSON [header, content]                              head_len bytes
    head_mac     HMAC-SHA256(key, prefix + head)                     mac_len bytes
    payload      pickle stream                                       payload_len bytes
    payload_mac  HMAC-SHA256(key, head_mac + payload)                only if payload_len > 0
    buffers      buffer 0 | buffer 1 | ...
    tail         HMAC-SHA256(key, last_mac + buffer 0 + buffer 1 ...) only with SIGNED_BUFFERS

``last_mac`` is ``payload_mac`` if there is a payload, else ``head_mac``. A message
with neither payload nor buffers (an execute request, most replies) costs one MAC.

Receiving, in order:

1. From the prefix alone, refuse a head longer than the head limit (``PREAUTH_MAX_HEAD``,
   64 KiB, until the connection's first message is accepted: a handshake is tiny;
   ``max_head`` after) and lengths adding up to more than ``max_frame``.
2. Check ``head_mac`` before parsing the header, then the header's place in the
   sequence. Until then nothing is allocated for payload or buffers: a peer without
   the key makes the receiver hold at most one head.
3. Receive the payload, then the buffers, each into memory of its own that grows with
   the bytes that actually arrive (see ``memory``), not with the lengths announced.
   The payload is checked against ``payload_mac`` (and signed buffers against
   ``tail``) before the message is handed out: nothing unauthenticated is unpickled.

Buffers are covered by ``tail`` when the channel has ``sign_buffers=True``; such a
channel also refuses buffers its peer did not sign. A kernel started with
``--KernelApp.sign_buffers=True`` says so in its connection file, and its clients
then sign too. Without it (the default, as in Jupyter's protocol) only the buffers'
lengths are signed: their bytes are data handed to an already authenticated
reconstructor, never code, and hashing every byte twice would halve bulk throughput.
Use TLS, or ``sign_buffers``, where data could be altered in transit.

Replay: every message names the receiver's nonce (``session``) and a sequence
number that must be exactly one more than the last accepted on that connection.
A peer's nonce is learnt from its first message (the handshake), which alone has
``session`` null.

Versions: a frame starting "IPK" with another version byte is refused as "another
version of the wire protocol", not as a bad signature. A refusal is sent as an
*alert*, which is the same in every version, never signed and never parsed beyond
its text: ``"IPK!" | length u16 | zeros up to the prefix's size | UTF-8 text``.

A connection, as a transcript::

    client -> connect_request  {session: null, seq: 1}  content {nonce: c}
    kernel -> connect_reply    {session: c,    seq: 1}  content {nonce: k, pid, ...}
    client -> execute_request  {session: k,    seq: 2, id: 1}  content {source: "a=5"}
    kernel -> execute_reply    {session: c,    seq: 2, id: 1}  content {number: 1, ...}
    client -> push_request     {session: k,    seq: 3, id: 2}  payload, buffers

and the execute request above, byte by byte (no payload, no buffers)::

    49 50 4b 02 00 20 00 00  00 00 00 78 00 00 00 00 00 00 00 00
    [{"id":1,"type":"execute_request","session":"6b0c...","seq":2},{"source":"a=5",...}]
    <32 bytes: HMAC-SHA256(key, the 20 prefix bytes + the 120 head bytes)>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    FrameTooLarge,
    InvalidSignature,
    MalformedFrame,
    ReplayedMessage,
    UnsignedMessage,
)
from .memory import ReceiveBuffer

VERSION = 2
MAGIC = b"IPK" + bytes([VERSION])
ALERT_MAGIC = b"IPK!"
SIGNED_BUFFERS = 0x01
MAC_LEN = hashlib.sha256().digest_size
MAX_BUFFERS = 4096
DEFAULT_MAX_FRAME = 4 * 1024**3 + 1024**2
#: Largest head a connection accepts before its peer's first message is authenticated.
PREAUTH_MAX_HEAD = 64 * 1024
#: Largest head (JSON header and content) accepted after that, unless configured.
DEFAULT_MAX_HEAD = 256 * 1024**2
#: Largest payload decoded in one step, as a view of the bytes read, when its whole
#: frame has arrived (a task's pickled call or value); larger ones get memory of their own.
SMALL_PAYLOAD = 64 * 1024

_PREFIX = struct.Struct(">4sBBHIQ")
_ALERT = struct.Struct(">4sH")
_U64 = struct.Struct(">Q")
encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
decode_json = json.JSONDecoder().decode
_raw_decode_json = json.JSONDecoder().raw_decode

Buffer = bytes | bytearray | memoryview
_State = Callable[[memoryview], list["Message"]]


def new_key() -> str:
    """A fresh random key (256 bits, hex), as written into connection files."""
    return os.urandom(32).hex()


def new_nonce() -> str:
    """A fresh connection nonce."""
    return os.urandom(16).hex()


@dataclass
class Message:
    """One decoded message: header, content, and the payload with its buffers."""

    header: dict[str, Any]
    content: dict[str, Any]
    payload: Buffer = b""
    buffers: list[memoryview] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.header["type"]

    @property
    def id(self) -> int:
        return self.header.get("id", 0)


def _head_encoder() -> Callable[[Any], str]:
    """``encode_json`` made once for one channel instead of per call: ``json`` builds a
    new C encoder for every ``encode``, which costs as much as encoding a small head.
    Not thread-safe (its circular-reference check keeps state): callers seal under a lock.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encode_json
    encoder = make(
        {},  # markers: checks for circular references, as encode_json does
        json.JSONEncoder().default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    return lambda value: "".join(encoder(value, 0))


def _decode_head(text: str) -> Any:
    """``decode_json``, without its scans for surrounding whitespace where there is none
    (our peers never send any)."""
    try:
        value, end = _raw_decode_json(text)
    except ValueError:
        end = -1
    return value if end == len(text) else decode_json(text)


def encode_alert(text: str) -> bytes:
    """An unsigned refusal notice: the only frame a peer without our key is sent."""
    data = text.encode("utf-8")[:65535]
    return _ALERT.pack(ALERT_MAGIC, len(data)).ljust(_PREFIX.size, b"\0") + data


class Channel:
    """Signing and replay state for one connection; turns messages into frames and back.

    ``sign_buffers`` signs the buffers this end sends and refuses frames whose buffers
    the peer did not sign. ``max_head`` bounds the JSON part of a frame once the peer
    is authenticated, ``max_frame`` a whole frame.

    ``seal`` and the decoder are not thread-safe: callers that send from several
    threads seal and send under one lock, so sequence numbers go out in order.

    >>> a, b = Channel(b"k"), Channel(b"k")
    >>> frame = b"".join(a.seal("ping", {"x": 1}))
    >>> [m.content for m in b.decoder().feed(frame)]
    [{'x': 1}]
    """

    def __init__(
        self,
        key: bytes | str,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_head: int = DEFAULT_MAX_HEAD,
        sign_buffers: bool = False,
    ) -> None:
        self.key = key.encode("ascii") if isinstance(key, str) else key
        self.max_frame = max_frame
        self.max_head = max_head
        self.sign_buffers = sign_buffers
        self.nonce = new_nonce()
        self.peer_nonce: str | None = None
        self._keyed = hmac.new(self.key, digestmod="sha256")
        self._encode = _head_encoder()
        self._sent = 0
        self._received = 0

    def mac(self) -> Any:
        """A fresh HMAC-SHA256 object keyed with this channel's key."""
        return self._keyed.copy()

    @property
    def head_limit(self) -> int:
        """The longest head accepted now: small until the peer has been authenticated."""
        return self.max_head if self._received else min(self.max_head, PREAUTH_MAX_HEAD)

    def seal(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        payload: Buffer = b"",
        buffers: Sequence[Buffer] = (),
        **header: Any,
    ) -> list[Buffer]:
        """Frame one message; returns the pieces to send, in order, without copying buffers."""
        self._sent += 1
        header["type"] = msg_type
        header["session"] = self.peer_nonce
        header["seq"] = self._sent
        head = self._encode([header, content or {}]).encode()
        payload_len = memoryview(payload).nbytes
        flags = SIGNED_BUFFERS if buffers and self.sign_buffers else 0
        prefix = _PREFIX.pack(MAGIC, flags, MAC_LEN, len(buffers), len(head), payload_len)
        if buffers:
            prefix += b"".join(_U64.pack(memoryview(b).nbytes) for b in buffers)
        mac = self._keyed.copy()
        mac.update(prefix)
        mac.update(head)
        last_mac = mac.digest()
        pieces: list[Buffer] = [prefix, head, last_mac]
        if payload_len:
            mac = self._keyed.copy()
            mac.update(last_mac)
            mac.update(payload)
            last_mac = mac.digest()
            pieces += (payload, last_mac)
        if buffers:
            pieces += buffers
            if flags:
                mac = self._keyed.copy()
                mac.update(last_mac)
                for b in buffers:
                    mac.update(b)
                pieces.append(mac.digest())
        return pieces

    def accept(self, header: dict[str, Any]) -> None:
        """Check a verified header's place in the sequence; learn nothing else."""
        expected = self._received + 1
        if header.get("seq") != expected:
            raise ReplayedMessage(
                f"message {header.get('seq')} out of sequence (expected {expected})"
            )
        session = header.get("session")
        if self._received == 0:
            if session is not None and session != self.nonce:
                raise ReplayedMessage("first message names another connection")
        elif session != self.nonce:
            raise ReplayedMessage("message belongs to another connection")
        self._received = expected

    def decoder(self) -> FrameDecoder:
        """A decoder for the frames this channel's peer sends."""
        return FrameDecoder(self)


class FrameDecoder:
    """Incremental, linear-time frame parser.

    Feed it bytes as they arrive with ``feed``; or, to receive straight into the
    memory it allocated for a payload or buffer, ask ``buffer_to_fill`` for the memory
    a socket should ``recv_into`` and report the count with ``filled``, as asyncio's
    BufferedProtocol does. Both return the messages that became complete. A refusal
    the peer sent is left in ``alert``.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._pending = bytearray()
        self._need = _PREFIX.size
        self._state: _State = self._on_prefix
        self._flags = 0
        self._head_len = 0
        self._payload_len = 0
        self._sizes: list[int] = []
        self._prefix: Buffer = b""
        self._last_mac = b""
        self._message: Message | None = None
        self._buffers: list[memoryview] = []
        self._filling: ReceiveBuffer | None = None
        self._filled = 0
        self._on_filled: _State = self._on_payload
        self.alert: str | None = None

    def feed(self, data: Buffer) -> list[Message]:
        """Consume bytes; return the messages they complete. Raises WireError on a bad frame."""
        out: list[Message] = []
        # Messages keep views of what they were fed: only immutable bytes may be kept.
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        while view.nbytes:
            if not self._pending and self._state == self._on_prefix:
                # Most messages (requests, replies) are a prefix and a head alone: when
                # one has arrived whole, take it in one step.
                size = self._small_frame_size(view)
                if size:
                    out.append(self._small_frame(view[:size]))
                    view = view[size:]
                    continue
            incoming = self._filling
            if incoming is not None:
                n = min(view.nbytes, incoming.size - self._filled)
                incoming.view[self._filled : self._filled + n] = view[:n]
                view = view[n:]
                out.extend(self.filled(n))
                continue
            need = self._need
            if not self._pending and view.nbytes >= need:
                chunk, view = view[:need], view[need:]
            else:
                take = min(view.nbytes, need - len(self._pending))
                self._pending += view[:take]
                view = view[take:]
                if len(self._pending) < need:
                    break
                chunk, self._pending = memoryview(self._pending), bytearray()
            out.extend(self._state(chunk))
        return out

    def buffer_to_fill(self) -> memoryview | None:
        """The unfilled rest of the payload or buffer being received, or None outside one."""
        if self._filling is None:
            return None
        return self._filling.view[self._filled :]

    def filled(self, n: int) -> list[Message]:
        """Record ``n`` bytes written into ``buffer_to_fill()``; return completed messages."""
        incoming = self._filling
        assert incoming is not None
        self._filled += n
        incoming.advance(self._filled)
        if self._filled < incoming.size:
            return []
        self._filling = None
        return self._on_filled(incoming.view)

    def _expect(self, size: int, state: _State) -> None:
        self._need = size
        self._state = state

    def _fill(self, size: int, then: _State) -> None:
        try:
            self._filling = ReceiveBuffer(size)
        except (MemoryError, OSError) as e:
            raise FrameTooLarge(f"no memory for a message part of {size} bytes ({e})") from None
        self._filled = 0
        self._on_filled = then

    def _on_prefix(self, chunk: memoryview) -> list[Message]:
        magic, flags, mac_len, n_buffers, head_len, payload_len = _PREFIX.unpack(chunk)
        if magic != MAGIC:
            return self._on_foreign_prefix(magic, chunk)
        if mac_len == 0:
            raise UnsignedMessage("message carries no signature")
        if mac_len != MAC_LEN:
            raise MalformedFrame(f"signature length {mac_len}, expected {MAC_LEN}")
        if n_buffers > MAX_BUFFERS:
            raise FrameTooLarge(f"{n_buffers} buffers announced, at most {MAX_BUFFERS}")
        limit = self.channel.head_limit
        if head_len > limit:
            when = " before the peer is authenticated" if limit < self.channel.max_head else ""
            raise FrameTooLarge(
                f"message head of {head_len} bytes announced, maximum is {limit}{when}"
            )
        self._flags, self._head_len, self._payload_len = flags, head_len, payload_len
        self._prefix = chunk
        if n_buffers:
            self._expect(8 * n_buffers, self._on_buffer_sizes)
            return []
        self._sizes = []
        return self._check_total()

    def _on_foreign_prefix(self, magic: bytes, chunk: memoryview) -> list[Message]:
        if magic == ALERT_MAGIC:
            (length,) = struct.unpack_from(">H", chunk, 4)
            self._expect(length, self._on_alert)
            return self._on_alert(memoryview(b"")) if length == 0 else []
        if magic[:3] == MAGIC[:3]:
            raise MalformedFrame(
                f"the peer speaks version {magic[3]} of the wire protocol and this end "
                f"version {VERSION}: install the same ipython_parallel_kernel version on both"
            )
        raise MalformedFrame(f"not a frame of this protocol (starts {bytes(magic)!r})")

    def _on_buffer_sizes(self, chunk: memoryview) -> list[Message]:
        self._prefix = bytes(self._prefix) + bytes(chunk)
        self._sizes = [s for (s,) in _U64.iter_unpack(chunk)]
        return self._check_total()

    def _check_total(self) -> list[Message]:
        total = self._head_len + self._payload_len + sum(self._sizes)
        if total > self.channel.max_frame:
            raise FrameTooLarge(
                f"frame of {total} bytes announced, maximum is {self.channel.max_frame}"
            )
        self._expect(self._head_len + MAC_LEN, self._on_head)
        return []

    def _small_frame_size(self, view: memoryview) -> int:
        """The length of the frame ``view`` starts with if it is whole there, well formed
        and has no buffers and at most a small payload; else 0 (the parts are then taken
        one by one, and a bad frame refused as it should be)."""
        if view.nbytes < _PREFIX.size:
            return 0
        magic, _, mac_len, n_buffers, head_len, payload_len = _PREFIX.unpack_from(view)
        size = _PREFIX.size + head_len + MAC_LEN
        if payload_len:
            size += payload_len + MAC_LEN
        if (
            magic != MAGIC
            or mac_len != MAC_LEN
            or n_buffers
            or payload_len > SMALL_PAYLOAD
            or head_len > self.channel.head_limit
            or head_len + payload_len > self.channel.max_frame
            or view.nbytes < size
        ):
            return 0
        return size

    def _small_frame(self, frame: memoryview) -> Message:
        """A whole frame without buffers (see ``_small_frame_size``): its payload, if it
        has one, is a view of the bytes it arrived in."""
        head_len, payload_len = _PREFIX.unpack_from(frame)[4:]
        head_end = _PREFIX.size + head_len
        head_mac = frame[head_end : head_end + MAC_LEN]
        header, content, digest = self._open_head(
            frame[: _PREFIX.size], frame[_PREFIX.size : head_end], head_mac
        )
        if not payload_len:
            return Message(header, content)
        payload = frame[head_end + MAC_LEN : head_end + MAC_LEN + payload_len]
        self._check_payload(digest, payload, frame[-MAC_LEN:])
        return Message(header, content, payload)

    def _open_head(
        self, prefix: Buffer, head: memoryview, head_mac: memoryview
    ) -> tuple[dict[str, Any], dict[str, Any], bytes]:
        """Check a head's signature, parse it and check its place in the sequence;
        return header, content and the head's MAC."""
        mac = self.channel.mac()
        mac.update(prefix)
        mac.update(head)
        digest = mac.digest()
        if not hmac.compare_digest(digest, head_mac):
            raise InvalidSignature("signature does not match the key")
        try:
            header, content = _decode_head(str(head, "utf-8"))
        except (ValueError, TypeError, RecursionError) as e:
            raise MalformedFrame(f"unreadable header: {e}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise MalformedFrame("header must be an object with a type")
        if not isinstance(content, dict):
            raise MalformedFrame("content must be an object")
        self.channel.accept(header)
        return header, content, digest

    def _on_head(self, chunk: memoryview) -> list[Message]:
        header, content, digest = self._open_head(self._prefix, chunk[:-MAC_LEN], chunk[-MAC_LEN:])
        if self._sizes and self.channel.sign_buffers and not self._flags & SIGNED_BUFFERS:
            raise UnsignedMessage(
                "array buffers must be signed on this connection: connect with the kernel's "
                "connection file, which sets sign_buffers"
            )
        self._message = Message(header, content)
        self._last_mac = digest
        self._buffers = []
        if self._payload_len:
            self._fill(self._payload_len, self._on_payload)
            return []
        return self._next_buffer()

    def _on_payload(self, payload: memoryview) -> list[Message]:
        assert self._message is not None
        self._message.payload = payload
        self._expect(MAC_LEN, self._on_payload_mac)
        return []

    def _on_payload_mac(self, chunk: memoryview) -> list[Message]:
        assert self._message is not None
        self._last_mac = self._check_payload(self._last_mac, self._message.payload, chunk)
        return self._next_buffer()

    def _check_payload(self, head_digest: bytes, payload: Buffer, payload_mac: Buffer) -> bytes:
        """The payload's MAC (chained to the head's), checked against ``payload_mac``."""
        mac = self.channel.mac()
        mac.update(head_digest)
        mac.update(payload)
        digest = mac.digest()
        if not hmac.compare_digest(digest, payload_mac):
            raise InvalidSignature("payload does not match its signature: altered on the way")
        return digest

    def _on_buffer(self, buffer: memoryview) -> list[Message]:
        self._buffers.append(buffer)
        return self._next_buffer()

    def _next_buffer(self) -> list[Message]:
        sizes = self._sizes
        while len(self._buffers) < len(sizes) and sizes[len(self._buffers)] == 0:
            self._buffers.append(memoryview(b""))
        if len(self._buffers) < len(sizes):
            self._fill(sizes[len(self._buffers)], self._on_buffer)
            return []
        if self._flags & SIGNED_BUFFERS and sizes:
            self._expect(MAC_LEN, self._on_tail)
            return []
        return [self._finish()]

    def _on_tail(self, chunk: memoryview) -> list[Message]:
        mac = self.channel.mac()
        mac.update(self._last_mac)
        for b in self._buffers:
            mac.update(b)
        if not hmac.compare_digest(mac.digest(), chunk):
            raise InvalidSignature("array buffers do not match their signature: altered on the way")
        return [self._finish()]

    def _finish(self) -> Message:
        message = self._message
        assert message is not None
        message.buffers = self._buffers
        self._message, self._buffers = None, []
        self._expect(_PREFIX.size, self._on_prefix)
        return message

    def _on_alert(self, chunk: memoryview) -> list[Message]:
        self.alert = str(chunk, "utf-8", "replace")
        self._expect(_PREFIX.size, self._on_prefix)
        return []

    def close(self) -> None:
        """Free a partly received frame now and refuse any further input.

        The decoder refers to itself through its current state (a bound method), so
        merely dropping it would keep a half-received payload, up to gigabytes, until
        the garbage collector runs.
        """
        self._pending = bytearray()
        self._filling = None
        self._message = None
        self._buffers = []
        self._prefix = b""
        self._expect(_PREFIX.size, self._on_closed)
        self._on_filled = self._on_closed

    def _on_closed(self, chunk: memoryview) -> list[Message]:
        raise MalformedFrame("bytes arrived after the connection was closed")
