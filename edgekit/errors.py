"""Typed errors, each with its exit code: the one place that maps failures to exit codes.

The CLI catches :class:`EdgekitError` once, prints ``error: <message>`` on one line and exits with
``exit_code``. Library callers get the exception itself.
"""
from __future__ import annotations

# Exit codes, documented in README.md ("Exit codes"). Keep this table and the README in step.
EXIT_OK = 0
EXIT_VERIFY_FAILED = 1  # an artifact was written but does not compute what the model computes
EXIT_USAGE = 2  # bad flags or option values (argparse uses 2 as well)
EXIT_MODEL = 3  # the model could not be read, trusted or instantiated
EXIT_DATA = 4  # calibration / evaluation / training data is unusable
EXIT_CONVERSION = 5  # the converter rejected the model (unsupported op, export failure)
EXIT_MISSING_DEPENDENCY = 6  # an optional extra is not installed
EXIT_OUTPUT = 7  # the output location cannot be written
EXIT_DEVICE = 8  # a device is unreachable, unauthorized, or a runner is missing
EXIT_INTERNAL = 70  # a bug in edgekit (EX_SOFTWARE): please report it with --verbose
# Stopped from outside (128 + the signal, as shells report it); staging folders are removed first.
EXIT_HANGUP = 129  # SIGHUP: the terminal went away
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM: a CI cancel, `timeout`, `kill`


class EdgekitError(Exception):
    """Base class. ``str(err)`` is the one line a user sees."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EdgekitError):
    exit_code = EXIT_USAGE


class ModelLoadError(EdgekitError):
    exit_code = EXIT_MODEL


class UnsafePickleError(ModelLoadError):
    """A fully pickled module was given without --trust-pickle."""


class DataError(EdgekitError):
    exit_code = EXIT_DATA


class ConversionError(EdgekitError):
    exit_code = EXIT_CONVERSION


class MissingDependencyError(EdgekitError):
    exit_code = EXIT_MISSING_DEPENDENCY

    def __init__(self, what: str, extra: str):
        super().__init__(
            f"{what} is not installed", hint=f"pip install 'edgekit[{extra}]'"
        )
        self.extra = extra


class OutputError(EdgekitError):
    exit_code = EXIT_OUTPUT


class DeviceError(EdgekitError):
    exit_code = EXIT_DEVICE


class VerificationFailed(EdgekitError):
    """Raised by the API only when asked (strict); the CLI maps failed artifacts to exit 1."""

    exit_code = EXIT_VERIFY_FAILED


EXIT_CODES = {
    EXIT_OK: "success: every artifact written and verified (or --no-verify)",
    EXIT_VERIFY_FAILED: "an artifact failed verification (kept, marked failed), or is unverified under --strict",
    EXIT_USAGE: "bad command line or option value",
    EXIT_MODEL: "model file unreadable, untrusted pickle, wrong --arch, or state_dict that does not fit",
    EXIT_DATA: "calibration / evaluation / training data unusable (missing, NaN/Inf, wrong shape)",
    EXIT_CONVERSION: "the converter could not take the model (the op and where it sits are named)",
    EXIT_MISSING_DEPENDENCY: "an optional extra is missing (the pip install line is printed)",
    EXIT_OUTPUT: "the output folder cannot be written; nothing was left behind",
    EXIT_DEVICE: "a device is unreachable or unauthorized, or its runner is missing",
    EXIT_INTERNAL: "internal error in edgekit (rerun with --verbose and report it)",
    EXIT_HANGUP: "stopped by SIGHUP; nothing half-written was left",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); nothing half-written was left",
    EXIT_TERMINATED: "stopped by SIGTERM (a CI cancel, timeout, kill); nothing half-written was left",
}


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (at most ``limit`` characters): how a foreign exception
    is quoted inside one of edgekit's one-line errors."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__
