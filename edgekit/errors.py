"""Typed errors, each with its exit code: the one place that maps failures to exit codes.

The CLI catches :class:`EdgekitError` once, prints ``error: <message>`` on one line and exits with
``exit_code``. Library callers get the exception itself.
"""
from __future__ import annotations

# Exit codes, documented in README.md ("Exit codes"); what each means is said once, in EXIT_CODES below.
EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_USAGE = 2  # argparse uses 2 as well
EXIT_MODEL = 3
EXIT_DATA = 4
EXIT_CONVERSION = 5
EXIT_MISSING_DEPENDENCY = 6
EXIT_OUTPUT = 7
EXIT_DEVICE = 8
EXIT_INTERNAL = 70  # EX_SOFTWARE
# Stopped from outside (128 + the signal, as shells report it); staging folders are removed first.
EXIT_HANGUP = 129
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class EdgekitError(Exception):
    """Base class. ``str(err)`` is the one line a user sees. A subclass names its exit code in its
    class line (``class DataError(EdgekitError, exit_code=EXIT_DATA)``); without one it inherits its base's."""

    exit_code = EXIT_INTERNAL

    def __init_subclass__(cls, exit_code: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EdgekitError, exit_code=EXIT_USAGE):
    """A flag, option value or option file that edgekit cannot act on."""


class ModelLoadError(EdgekitError, exit_code=EXIT_MODEL):
    """The model file, factory or architecture cannot give a module."""


class UnsafePickleError(ModelLoadError):
    """A fully pickled module was given without --trust-pickle."""


class DataError(EdgekitError, exit_code=EXIT_DATA):
    """Samples, results or manifests that cannot be read or do not fit the model."""


class ConversionError(EdgekitError, exit_code=EXIT_CONVERSION):
    """A converter refused the model; the message names the op and where it sits."""


class MissingDependencyError(EdgekitError, exit_code=EXIT_MISSING_DEPENDENCY):
    def __init__(self, what: str, extra: str):
        install = f"pip install 'edgekit[{extra}]'" if extra else "pip install edgekit"
        super().__init__(f"{what} is not installed", hint=install)
        self.extra = extra


class OutputError(EdgekitError, exit_code=EXIT_OUTPUT):
    """The output location cannot be written."""


class DeviceError(EdgekitError, exit_code=EXIT_DEVICE):
    """A device, its host tool or its runner cannot be used."""


class VerificationFailed(EdgekitError, exit_code=EXIT_VERIFY_FAILED):
    """Raised by the API only when asked (strict); the CLI maps failed artifacts to exit 1."""


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
