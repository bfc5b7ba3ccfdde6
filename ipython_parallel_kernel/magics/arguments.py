"""Sub-commands for ``magic_arguments``: ``%kernel start``, ``%kernel connect``...

IPython's ``magic_arguments`` builds one argparse parser from decorators; these two add
argparse sub-parsers to it, so a magic with verbs keeps that one style and ``%kernel?``
shows the verbs' help::

    @magic_arguments()
    @subcommands()
    @subcommand("start", "start local kernels", argument("-n", type=int, default=2))
    @line_magic
    def kernel(self, line): ...
"""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import ArgDecorator, MagicArgumentParser, argument


class CommandParser(MagicArgumentParser):
    """A verb's parser: a mistake is a UsageError that shows the verb's usage."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message}\n{self.format_usage()}")


class subcommands(ArgDecorator):
    """The magic takes a verb first, stored as ``dest``; ``subcommand`` adds the verbs."""

    def __init__(self, dest: str = "command") -> None:
        self.dest = dest

    def add_to_parser(self, parser: argparse.ArgumentParser, group: Any) -> Any:
        """Add the sub-parsers; returned, the following ``subcommand``\\ s add to them."""
        return parser.add_subparsers(dest=self.dest, parser_class=CommandParser)


class subcommand(ArgDecorator):
    """One verb: its name, its help line and its arguments."""

    def __init__(self, name: str, help: str, *arguments: argument) -> None:
        self.name = name
        self.help = help
        self.arguments = arguments

    def add_to_parser(self, parser: argparse.ArgumentParser, group: Any) -> None:
        """Add this verb to the sub-parsers ``subcommands`` made (passed as ``group``)."""
        if not isinstance(group, argparse._SubParsersAction):
            raise TypeError("@subcommand goes below @subcommands()")
        verb = group.add_parser(self.name, help=self.help)
        for item in self.arguments:
            item.add_to_parser(verb, None)
