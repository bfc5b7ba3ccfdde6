"""Records: the record of one command, and the datagrams that carry it to gatherers.

``CommandRecord`` is shared by the kernel (which fills it in) and the client (which
reads it), so both sides agree on one definition of the fields.

A kernel sends each completed command's record to its gatherers as signed datagrams::

    "IPKR" | mac (32) | sender u64 | seq u32 | sent u64 | number u32 | piece u16
           | count u16 | kernel_len u8 | kernel (UTF-8, "ip:port") | data

mac = HMAC-SHA256(key, everything after it). ``sender`` is random per kernel run and
``seq`` counts its records; ``sent`` is when the record was sealed, in milliseconds
since the epoch, so a gatherer can refuse old datagrams replayed to it, even after it
restarted; with ``(sender, seq)`` it refuses the replay of a record it has shown. A
record's JSON, zlib-compressed, is cut into ``count`` pieces of at most RECORD_PIECE
bytes, so a record of any size travels in datagrams small enough for any network, and
a gatherer can say exactly which pieces it missed. The kernel name is readable before
the datagram is verified, so a gatherer can say whose records it has no key for.
"""

from __future__ import annotations

import hmac
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import FrameTooLarge, InvalidSignature, MalformedFrame
from .wire import MAC_LEN, decode_json, encode_json


@dataclass
class CommandRecord:
    """What one numbered command did.

    ``result`` is the display data of a trailing expression (mimetype -> data);
    ``displays`` the display data the command published (``display()``, matplotlib
    figures), in order, binary data such as PNG base64-encoded as in Jupyter; ``error``
    is ``{"ename", "evalue", "traceback"}``; timings are Unix times.
    """

    number: int
    source: str
    stdout: str = ""
    stderr: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    submitted: float = 0.0
    started: float = 0.0
    completed: float = 0.0
    displays: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the fields."""
        return dict(self.__dict__)


RECORD_MAGIC = b"IPKR"
RECORD_PIECE = 8192
_RECORD_HEAD = struct.Struct(">QIQIHHB")
MAX_RECORD_PIECES = 65535


@dataclass
class RecordPiece:
    """One verified datagram of a record."""

    sender: int
    seq: int
    number: int
    piece: int
    count: int
    kernel: str
    data: bytes
    #: When the kernel sealed the record, in seconds since the epoch.
    sent: float


def seal_record(
    key: bytes | str,
    sender: int,
    seq: int,
    number: int,
    kernel: str,
    record: dict[str, Any],
    *,
    sent: float,
) -> list[bytes]:
    """A command's record as signed datagrams, in piece order; ``sent`` is now
    (``time.time()``)."""
    key = key.encode("ascii") if isinstance(key, str) else key
    body = zlib.compress(encode_json(record).encode(), 1)
    chunks = [body[i : i + RECORD_PIECE] for i in range(0, len(body), RECORD_PIECE)] or [b""]
    if len(chunks) > MAX_RECORD_PIECES:
        raise FrameTooLarge(f"record of command {number} needs {len(chunks)} datagrams")
    name = kernel.encode()[:255]
    datagrams = []
    for index, chunk in enumerate(chunks):
        head = _RECORD_HEAD.pack(
            sender, seq, round(sent * 1000), number, index, len(chunks), len(name)
        )
        signed = head + name + chunk
        mac = hmac.new(key, signed, "sha256").digest()
        datagrams.append(RECORD_MAGIC + mac + signed)
    return datagrams


def peek_record_piece(datagram: bytes) -> RecordPiece:
    """Parse a record datagram WITHOUT verifying it: what it claims, to be trusted only
    after ``open_record_piece``; MalformedFrame if it is not a record datagram."""
    if len(datagram) < 4 + MAC_LEN + _RECORD_HEAD.size:
        raise MalformedFrame("datagram too short to be a record")
    if datagram[:4] != RECORD_MAGIC:
        raise MalformedFrame("not a record datagram")
    signed = datagram[4 + MAC_LEN :]
    sender, seq, sent, number, piece, count, name_len = _RECORD_HEAD.unpack_from(signed)
    start = _RECORD_HEAD.size
    if piece >= count:
        raise MalformedFrame(f"piece {piece} of {count}")
    kernel = signed[start : start + name_len].decode("utf-8", "replace")
    data = signed[start + name_len :]
    return RecordPiece(sender, seq, number, piece, count, kernel, data, sent / 1000)


def open_record_piece(datagram: bytes, keys: list[bytes]) -> RecordPiece:
    """Verify a datagram against the known keys and parse it; WireError if it fails."""
    piece = peek_record_piece(datagram)
    mac, signed = datagram[4 : 4 + MAC_LEN], datagram[4 + MAC_LEN :]
    if not any(hmac.compare_digest(hmac.new(key, signed, "sha256").digest(), mac) for key in keys):
        raise InvalidSignature("record datagram not signed with any known key")
    return piece


def decode_record(pieces: list[bytes]) -> dict[str, Any]:
    """The record a complete, ordered list of pieces carries."""
    try:
        record = decode_json(zlib.decompress(b"".join(pieces)).decode())
    except (zlib.error, ValueError) as e:
        raise MalformedFrame(f"unreadable record: {e}") from None
    if not isinstance(record, dict):
        raise MalformedFrame("a record must be an object")
    return record
