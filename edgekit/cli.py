"""The edgekit command line: parse, call the API, render. Imports no ML framework at module level.

Each subcommand lives in edgekit/commands/<name>.py with ``add_parser(subparsers)`` and
``run(args) -> int``; adding one is one module plus one line in COMMANDS.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading
import traceback
import warnings

from edgekit import __version__
from edgekit.errors import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OUTPUT, EdgekitError

# An allocation the machine cannot make is a resource limit the user can change, not an edgekit
# bug; it shares the code of bad option values (the sizes asked for), as EX_USAGE does.
EXIT_MEMORY = 2

COMMANDS = {
    "convert": "edgekit.commands.convert",
    "inspect": "edgekit.commands.inspect",
    "demo": "edgekit.commands.demo",
    "distill": "edgekit.commands.distill",
    "run": "edgekit.commands.run",
    "package": "edgekit.commands.package",
    "bench": "edgekit.commands.bench",
    "devices": "edgekit.commands.devices",
    "diagnose": "edgekit.commands.diagnose",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI cancel, ``timeout``) or SIGHUP (a closed terminal), raised where the program is,
    so that every ``finally`` and context manager runs exactly as for Ctrl-C: staging folders go,
    a publish half-way rolls back."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_SIGNAL_MESSAGES = {"SIGINT": "interrupted; nothing half-written was left"}


def _signal_message(signum: int) -> str:
    name = signal.Signals(signum).name
    return _SIGNAL_MESSAGES.get(name, f"terminated by {name}; nothing half-written was left")


def _signal_exit_code(signum: int) -> int:
    return EXIT_INTERRUPTED if signum == getattr(signal, "SIGINT", None) else 128 + signum


def _leave_now(signum: int) -> None:
    """A signal inside a converter's native code: raising could abort the process through a C++
    frame (SIGABRT, exit -6, the staging folder left behind), so clean up here and exit."""
    import os

    from edgekit import manifest, ui

    ui.restore_terminal()
    manifest.remove_live_stages()
    print(f"\nerror: {_signal_message(signum)}", file=sys.__stderr__, flush=True)
    os._exit(_signal_exit_code(signum))


@contextlib.contextmanager
def _signals_as_exceptions():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        from edgekit.ui import in_native_section

        if in_native_section():
            _leave_now(signum)
        if signum == getattr(signal, "SIGINT", None):
            raise KeyboardInterrupt
        raise Terminated(signum)

    wanted = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    saved = {}
    for signum in wanted:
        try:
            saved[signum] = signal.signal(signum, handler)
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)


@contextlib.contextmanager
def _quiet_libraries(verbose: bool):
    """Without --verbose the user sees edgekit's lines only: library log records (torch, converters,
    runtimes: all below ERROR) and Python warnings are dropped. --verbose lets them all through."""
    if verbose:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logging.disable(previous)


def _fail(exc: BaseException, verbose: bool, message: str, code: int) -> int:
    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    with _signals_as_exceptions(), _quiet_libraries(verbose):
        try:
            return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
        except EdgekitError as exc:
            return _fail(exc, verbose, str(exc), exc.exit_code)
        except Terminated as exc:
            return _fail(exc, verbose, _signal_message(exc.signum), _signal_exit_code(exc.signum))
        except KeyboardInterrupt as exc:
            return _fail(exc, verbose, _signal_message(signal.SIGINT), EXIT_INTERRUPTED)
        except MemoryError as exc:
            return _fail(exc, verbose, "out of memory (smaller --input shapes or fewer samples may fit)", EXIT_MEMORY)
        except OSError as exc:  # a foreign failure to write or read, untranslated: say which
            from edgekit.manifest import is_disk_full

            if is_disk_full(exc):
                return _fail(exc, verbose, f"no space left on device ({exc.filename or exc})", EXIT_OUTPUT)
            return _internal(exc, verbose)
        except Exception as exc:  # a bug: one line, and the traceback on request
            return _internal(exc, verbose)


def _internal(exc: BaseException, verbose: bool) -> int:
    text = str(exc).strip().splitlines()
    first = text[0][:300] if text else ""
    return _fail(exc, verbose, f"internal error: {type(exc).__name__}: {first} (rerun with --verbose and report it)", EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
