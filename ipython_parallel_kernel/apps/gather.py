"""``ipk-gather``: watch kernels from a terminal of your own.

Runs a ``ResultGatherer`` in the foreground and prints every record the kernels that
``notify`` its address send, until Ctrl-C or SIGTERM (exit status 0). Its first line is
one scripts can wait for::

    $ ipk-gather --port 0 --watch ~/.ipython/profile_default/security/ipk-cluster-default.json
    ipk-gather listening on 127.0.0.1:41234
    [127.0.0.1:10105] In [1]: a = 5

It accepts the records of every kernel whose connection or cluster file it can read
in this user's IPython directory, kernels started after it included; ``--watch`` names
such files kept elsewhere. Records from a kernel it has no key for are counted, and that
kernel is named once, with what to do.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from ..client.gatherer import ResultGatherer
from ..core.connection import format_address

DEFAULT_PORT = 10104


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipk-gather", description="Print the records of the kernels that notify this."
    )
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"UDP port ({DEFAULT_PORT}; 0: any free)"
    )
    parser.add_argument(
        "--watch",
        nargs="+",
        default=[],
        metavar="FILE",
        help="connection or cluster files of kernels to accept records from, besides those "
        "in the IPython directory",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text, no colours")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ipk-gather``."""
    args = _parser().parse_args(argv)
    try:
        gatherer = ResultGatherer((args.ip, args.port), output=sys.stdout, colour=not args.no_color)
    except (OSError, ValueError) as e:
        print(f"ipk-gather: cannot listen on {args.ip}:{args.port}: {e}", file=sys.stderr)
        return 1
    try:
        for path in args.watch:
            gatherer.watch(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        gatherer.stop()
        print(f"ipk-gather: cannot read {path}: {e}", file=sys.stderr)
        return 1
    done = threading.Event()

    def finish(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    gatherer.start()
    print(f"ipk-gather listening on {format_address(gatherer.address)}", flush=True)
    try:
        while not done.wait(0.2):
            pass
    finally:
        gatherer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
