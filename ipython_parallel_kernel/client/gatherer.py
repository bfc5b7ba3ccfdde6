"""``ResultGatherer``: watch what kernels do, from any session, over UDP.

Kernels told to ``notify(addr)`` send every completed command's record to ``addr``
as signed datagrams. A gatherer listens there in a daemon thread, checks each
datagram against the keys it knows, puts records back together and prints them,
labelled by kernel and coloured::

    [127.0.0.1:10105] In [3]: a = 5
    [127.0.0.1:10105] Out[3]: 10

Many gatherers may watch one kernel and one gatherer many kernels, of several
clusters: it knows the key of every kernel whose connection or cluster file it was
given (``watch``), and by default those of every kernel whose connection or cluster
file it can read under this user's IPython directory (``ipk-kernel-*.json``,
``ipk-cluster-*.json``), including kernels started after it: a datagram signed with no
known key makes it look there again (at most every ``RESCAN_INTERVAL`` seconds; the
datagram waits for that). Records it still has no key for are counted per kernel
(``unknown``) and reported once per kernel, with what to do; other datagrams that are
not records are counted in ``rejected``. A record with pieces missing after
``PIECE_TIMEOUT`` seconds is reported ("kernel 127.0.0.1:10105, command 12: 1 of 5
pieces lost"), never dropped silently, and partial records are bounded in number.

Replays are refused and counted (``replayed``), never shown again. Each record carries
the time it was signed: one more than ``MAX_AGE`` seconds (60) from this machine's clock
is refused, so the clocks of watcher and kernels must agree to within a minute (NTP
does); that covers a gatherer restarted since it saw the record. Within that minute,
each kernel run's sequence numbers are tracked (the highest shown, and the last
``SEQ_WINDOW`` seen): a piece of a record already shown or reported lost is refused,
and never opens a partial record.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..core.clusterfile import read_kernels
from ..core.connection import Address, format_address, ipython_dir, parse_address
from ..core.records import RecordPiece, decode_record, open_record_piece, peek_record_piece
from ..errors import InvalidSignature, WireError

#: Seconds a partial record waits for its missing pieces before it is reported lost.
PIECE_TIMEOUT = 2.0
#: Partial records kept at once; the oldest is reported lost beyond that.
MAX_PARTIAL = 256
RECEIVE_BUFFER = 8 * 1024 * 1024
#: Seconds between two looks for new kernels' files when unknown keys arrive.
RESCAN_INTERVAL = 1.0
#: Bytes of datagrams with no known key kept until the next look, which may find it.
MAX_UNVERIFIED = 4 * 1024 * 1024
#: Kernel names counted apart in ``unknown``; further ones share one count.
MAX_UNKNOWN_KERNELS = 64
OTHER_KERNELS = "(other kernels)"
#: Seconds a record's signed time may be from this machine's clock before it is refused.
MAX_AGE = 60.0
#: Sequence numbers of one kernel run remembered below its highest; older are refused.
SEQ_WINDOW = 4096
#: Kernel runs whose sequence numbers are remembered (the least recently heard is dropped).
MAX_SENDERS = 1024

_COLOURS = {
    "source": "\x1b[32m",
    "stdout": "",
    "stderr": "\x1b[33m",
    "result": "\x1b[36m",
    "error": "\x1b[31m",
    "lost": "\x1b[35m",
}
_RESET = "\x1b[0m"


def format_record(record: dict[str, Any], colour: bool = True) -> str:
    """A record as the gatherer prints it: source, stdout, stderr, result, error."""
    label = f"[{record.get('kernel', '?')}]"
    number = record.get("number", "?")

    def paint(kind: str, text: str) -> str:
        return f"{_COLOURS[kind]}{text}{_RESET}" if colour and _COLOURS[kind] else text

    lines = [paint("source", f"{label} In [{number}]: ") + _indent(record.get("source", ""))]
    for kind in ("stdout", "stderr"):
        text = (record.get(kind) or "").rstrip("\n")
        if text:
            lines.append(f"{label} [{kind}] " + paint(kind, _indent(text)))
    if record.get("result") is not None:
        lines.append(paint("result", f"{label} Out[{number}]: {record['result']}"))
    error = record.get("error")
    if error:
        lines.append(paint("error", "".join(error.get("traceback", [])).rstrip("\n")))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return text.rstrip("\n").replace("\n", "\n    ")


class ResultGatherer:
    """Listens for kernels' command records on UDP ``(ip, port)`` and shows them.

    >>> rg = ResultGatherer(("127.0.0.1", 10104))
    >>> rg.start()
    >>> ic.notify(("127.0.0.1", 10104))  # from any session driving the kernels
    >>> rg.records[-1]["stdout"]
    >>> rg.stop()

    ``key``: one kernel's key, in addition to those ``watch`` and the connection files
    provide. ``output``: where records are printed (None: do not print; records are
    still kept in ``records`` and passed to ``on_record`` callbacks).
    """

    def __init__(
        self,
        addr: Address | str = ("127.0.0.1", 10104),
        key: str | None = None,
        *,
        output: TextIO | bool | None = True,
        colour: bool = True,
        profile_keys: bool = True,
    ) -> None:
        host, port = parse_address(addr, any_port=True)
        # Replaced, never changed in place: the listening thread reads it unlocked.
        self.keys: frozenset[bytes] = frozenset()
        if key:
            self.add_key(key)
        self._scan_profiles = profile_keys
        self._scanned: dict[Path, int] = {}
        self._scanned_at = float("-inf")
        self._unverified: deque[tuple[bytes, RecordPiece]] = deque()
        self._unverified_bytes = 0
        self.rescan()
        self.output = sys.stdout if output is True else (output or None)
        self.colour = colour
        self.records: list[dict[str, Any]] = []
        self.lost: list[str] = []
        self.rejected = 0
        #: Datagrams signed with no key this gatherer knows, by the kernel they name.
        self.unknown: dict[str, int] = {}
        #: Authentic datagrams refused: too old (or too far ahead), or already taken.
        self.replayed = 0
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._partial: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._sequences: OrderedDict[int, _Sequence] = OrderedDict()
        self._clock_noticed: set[str] = set()
        self._socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        self._grow_receive_buffer()
        self._socket.bind((host, port))
        self._socket.settimeout(0.2)
        self.address: Address = self._socket.getsockname()[:2]
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def __repr__(self) -> str:
        state = "running" if self._running.is_set() else "stopped"
        where = format_address(self.address)
        return f"<ResultGatherer {where} {state}, {len(self.records)} records>"

    # -- keys --------------------------------------------------------------------------

    def watch(self, path: str | Path) -> None:
        """Accept records from the kernel(s) of a connection or cluster file."""
        self._add_keys([info.key for info in read_kernels(path)])

    def add_key(self, key: str | bytes) -> None:
        """Accept records signed with ``key``, one kernel's (from its connection info)."""
        self._add_keys([key])

    def _add_keys(self, keys: Any) -> None:
        self.keys = self.keys | {k.encode("ascii") if isinstance(k, str) else k for k in keys}

    def rescan(self) -> None:
        """Learn the keys of the connection and cluster files now under the IPython
        directory (done by itself when records with an unknown key arrive)."""
        self._scanned_at = time.monotonic()
        if not self._scan_profiles:
            return
        found: list[str] = []
        for path in ipython_dir().glob("profile_*/security/ipk-*.json"):
            try:
                changed = path.stat().st_mtime_ns
                if self._scanned.get(path) != changed:
                    found += [info.key for info in read_kernels(path)]
                    self._scanned[path] = changed
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not ours to read, half gone, or not a connection file
        self._add_keys(found)

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> ResultGatherer:
        """Listen in a daemon thread; returns self."""
        if self._thread is None:
            self._running.set()
            self._thread = threading.Thread(target=self._listen, name="ipk-gatherer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and free the port."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._socket.close()

    def on_record(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(record)`` (on the gatherer's thread) for every record."""
        self._callbacks.append(callback)

    # -- the listening thread --------------------------------------------------------------

    def _grow_receive_buffer(self) -> None:
        # Records arrive in bursts of datagrams: a deep buffer keeps them from being lost.
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                return
            except OSError:
                continue

    def _listen(self) -> None:
        while self._running.is_set():
            try:
                datagram = self._socket.recv(65535)
            except TimeoutError:
                self._tick(time.monotonic())
                continue
            except OSError:
                return
            self.receive(datagram)
            self._tick(time.monotonic())

    def _tick(self, now: float) -> None:
        self._expire(now)
        if self._unverified and now - self._scanned_at >= RESCAN_INTERVAL:
            self.rescan()
            self._retry_unverified()

    def receive(self, datagram: bytes) -> None:
        """Take one datagram: verify, reassemble, and deliver any record it completes."""
        try:
            claimed = peek_record_piece(datagram)
            piece = open_record_piece(datagram, list(self.keys))
        except InvalidSignature:
            # Perhaps a kernel started since the last look: keep it for the next one.
            self._unverified.append((datagram, claimed))
            self._unverified_bytes += len(datagram)
            while self._unverified_bytes > MAX_UNVERIFIED:
                oldest, oldest_claim = self._unverified.popleft()
                self._unverified_bytes -= len(oldest)
                self._no_key(oldest_claim)
            self._tick(time.monotonic())
            return
        except WireError:
            self.rejected += 1
            return
        self._take(piece)

    def _retry_unverified(self) -> None:
        waiting, self._unverified, self._unverified_bytes = self._unverified, deque(), 0
        for datagram, claimed in waiting:
            try:
                piece = open_record_piece(datagram, list(self.keys))
            except WireError:
                self._no_key(claimed)
                continue
            self._take(piece)

    def _no_key(self, claimed: RecordPiece) -> None:
        # Unverified, so shown only escaped: it may be anyone's text.
        kernel = claimed.kernel.encode("unicode_escape").decode("ascii")
        if kernel not in self.unknown and len(self.unknown) >= MAX_UNKNOWN_KERNELS:
            kernel = OTHER_KERNELS
        first = kernel not in self.unknown
        self.unknown[kernel] = self.unknown.get(kernel, 0) + 1
        if first and kernel != OTHER_KERNELS:
            self._notice(
                f"kernel {kernel} sends records signed with a key this gatherer does not know; "
                "to see them, give it that kernel's connection or cluster file: "
                "rg.watch(path), or ipk-gather --watch FILE"
            )

    def _take(self, piece: RecordPiece) -> None:
        ident = (piece.sender, piece.seq)
        if not self._fresh(piece) or self._sequence(piece.sender).taken(piece.seq):
            self.replayed += 1
            return
        partial = self._partial.get(ident)
        if partial is None:
            partial = {"pieces": {}, "piece": piece, "since": time.monotonic()}
            self._partial[ident] = partial
            while len(self._partial) > MAX_PARTIAL:
                self._report_lost(*self._partial.popitem(last=False))
        elif piece.piece in partial["pieces"]:
            self.replayed += 1
            return
        partial["pieces"][piece.piece] = piece.data
        if len(partial["pieces"]) == piece.count:
            del self._partial[ident]
            self._remember_done(ident)
            chunks = [partial["pieces"][i] for i in range(piece.count)]
            try:
                record = decode_record(chunks)
            except WireError:
                self.rejected += 1
                return
            self._deliver(record)

    def _fresh(self, piece: RecordPiece) -> bool:
        age = time.time() - piece.sent
        if abs(age) <= MAX_AGE:
            return True
        if piece.kernel not in self._clock_noticed:
            self._clock_noticed.add(piece.kernel)
            when = f"{age:.0f} s ago" if age > 0 else f"{-age:.0f} s ahead of this clock"
            self._notice(
                f"kernel {piece.kernel} sent records signed {when}, more than {MAX_AGE:.0f} s: "
                "refused as replays; if it goes on, set the clocks of this machine and the "
                "kernel's right (NTP)"
            )
        return False

    def _sequence(self, sender: int) -> _Sequence:
        sequence = self._sequences.pop(sender, None) or _Sequence()
        self._sequences[sender] = sequence
        while len(self._sequences) > MAX_SENDERS:
            self._sequences.popitem(last=False)
        return sequence

    def _remember_done(self, ident: tuple[int, int]) -> None:
        sender, seq = ident
        self._sequence(sender).finish(seq)

    def _expire(self, now: float) -> None:
        for ident, partial in list(self._partial.items()):
            if now - partial["since"] > PIECE_TIMEOUT:
                del self._partial[ident]
                self._report_lost(ident, partial)

    def _report_lost(self, ident: tuple[int, int], partial: dict[str, Any]) -> None:
        piece = partial["piece"]
        missing = piece.count - len(partial["pieces"])
        message = (
            f"kernel {piece.kernel}, command {piece.number}: {missing} of {piece.count} pieces lost"
        )
        self._remember_done(ident)
        self.lost.append(message)
        self._notice(message)

    def _notice(self, message: str) -> None:
        self._show(f"{_COLOURS['lost']}{message}{_RESET}" if self.colour else message)

    def _deliver(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._show(format_record(record, self.colour))
        for callback in self._callbacks:
            callback(record)

    def _show(self, text: str) -> None:
        if self.output is None:
            return
        print_above_prompt(text, self.output)


class _Sequence:
    """The records of one kernel run (sender) that were shown or reported lost."""

    def __init__(self) -> None:
        self.highest = 0
        self.done: set[int] = set()

    def taken(self, seq: int) -> bool:
        """Whether record ``seq`` was shown or reported lost already, or is too old to say."""
        return seq <= self.highest - SEQ_WINDOW or seq in self.done

    def finish(self, seq: int) -> None:
        """Remember that record ``seq`` has been shown or reported lost."""
        self.done.add(seq)
        self.highest = max(self.highest, seq)
        if len(self.done) > 2 * SEQ_WINDOW:
            # Twice the window before pruning, so pruning costs O(1) per record.
            self.done = {s for s in self.done if s > self.highest - SEQ_WINDOW}


def print_above_prompt(text: str, output: TextIO) -> None:
    """Print from a background thread without garbling a terminal IPython prompt.

    In terminal IPython the text is printed through prompt_toolkit, which erases the
    prompt being typed, prints, and draws it again; elsewhere it is simply written.
    """
    app = _running_prompt()
    if app is None or output is not sys.stdout:
        print(text, file=output, flush=True)
        return
    from prompt_toolkit.application import run_in_terminal

    app.loop.call_soon_threadsafe(lambda: run_in_terminal(lambda: print(text, flush=True)))


def _running_prompt() -> Any:
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:
        return None
    if not InteractiveShell.initialized():
        return None
    session = getattr(InteractiveShell.instance(), "pt_app", None)
    app = getattr(session, "app", None)
    if app is None or not app.is_running or getattr(app, "loop", None) is None:
        return None
    return app
