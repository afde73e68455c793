"""The ``mpsearch`` command line: one small handler module per command.

Each command lives in ``mpsearch/commands/<name>.py`` and defines

    HELP: str                                   # one line for ``mpsearch --help``
    def add_arguments(parser) -> None           # its flags, each with help text
    def run(args) -> int                        # a thin call of the public verb; returns the exit code

Errors that a user caused (:class:`MpsearchError`) print one clear line and exit with 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from mpsearch.errors import MpsearchError

#: command name -> module under mpsearch.commands (imported only when listed or run).
COMMANDS: dict[str, str] = {
    "profiles": "mpsearch.commands.profiles",
    "profile": "mpsearch.commands.profile",
    "run": "mpsearch.commands.run",
    "analyze": "mpsearch.commands.analyze",
    "allocate": "mpsearch.commands.allocate",
    "search": "mpsearch.commands.search",
    "validate": "mpsearch.commands.validate",
    "export": "mpsearch.commands.export",
}

EXIT_OK, EXIT_USAGE = 0, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered command."""
    from mpsearch import __version__

    parser = argparse.ArgumentParser(
        prog="mpsearch",
        description="Pick a bit-width for every layer of a PyTorch network under hardware budgets, "
                    "and check the choice in integer-only arithmetic.",
    )
    parser.add_argument("--version", action="version", version=f"mpsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)  # a missing command module is a wiring error: it raises
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mpsearch`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE if argv else EXIT_OK
    try:
        return int(args._run(args) or 0)
    except MpsearchError as exc:
        print(f"mpsearch {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mpsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
