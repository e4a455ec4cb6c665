"""The edgekit command line: parse, call the API, render. Imports no ML framework at module level.

Each subcommand lives in edgekit/commands/<name>.py with ``add_parser(subparsers)`` and
``run(args) -> int``; adding one is one module plus one line in COMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from edgekit import __version__
from edgekit.errors import EXIT_CODES, EXIT_INTERNAL, EdgekitError

COMMANDS = {
    "convert": "edgekit.commands.convert",
    "inspect": "edgekit.commands.inspect",
    "demo": "edgekit.commands.demo",
    "distill": "edgekit.commands.distill",
    "run": "edgekit.commands.run",
    "package": "edgekit.commands.package",
    "bench": "edgekit.commands.bench",
    "devices": "edgekit.commands.devices",
}


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="edgekit",
        description="Take a fine-tuned PyTorch model to phones and edge boards: convert, quantize, verify, measure.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def add_common(parser: argparse.ArgumentParser) -> None:
    """Flags every command shares."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only results and warnings")
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks on error, and library logs")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except EdgekitError as exc:
        if verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, and the traceback on request
        if verbose:
            traceback.print_exc()
        print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --verbose and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
