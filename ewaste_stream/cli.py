"""Thin command line: argv -> library call -> exit code.

Exit codes: 0 ok, 1 a runtime failure (some input could not be processed), 2 bad usage or
bad configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ewaste-stream",
        description="Sort e-waste on a conveyor belt: cameras -> classifier -> one decision per item over ZeroMQ.",
        epilog="Run `ewaste-stream COMMAND --help` for a command's options. Docs: README.md, docs/WIRE.md, docs/GPU.md.",
    )
    parser.add_argument("--version", action="version", version=f"ewaste-stream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            mod = importlib.import_module(f".commands.{module_name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{module_name}":
                continue  # command not built yet
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .log import setup_logging

    setup_logging(verbose=args.verbose)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_gone()


def reader_gone() -> int:
    """Whoever read stdout went away (``... | head``): not an error, exit 0. Stdout is pointed
    at /dev/null so that the interpreter's flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
