"""Console output: stage progress on stderr, tables on stdout. No third-party dependency."""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, Sequence


# Native sections: while a converter runs, its C++ code may call back into Python, and an exception
# raised there by a signal handler can cross a frame that does not let it through (std::terminate,
# SIGABRT; seen under torch.onnx.export). The CLI's handler asks ``in_native_section`` and, when
# true, cleans up and leaves at once instead of raising. Each entry holds the descriptors 1 and 2
# of the terminal, saved when the converter's output was sent to a file (None when it was not).
_native_sections: list[tuple[int, int] | None] = []


def in_native_section() -> bool:
    return bool(_native_sections)


def restore_terminal() -> None:
    """Point descriptors 1 and 2 back at the terminal (the outermost capture's saved ones)."""
    import os

    saved = next((fds for fds in _native_sections if fds is not None), None)
    if saved is not None:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)


class Reporter:
    """Stage-by-stage progress (load, export, calibrate, convert, verify) on stderr."""

    def __init__(self, quiet: bool = False, stream=None, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose  # verbose: let converters' own output through
        self.stream = stream or sys.stderr

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        # warnings are shown even with --quiet: they change what the result means
        print(f"warning: {message}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        if not self.quiet:
            print(f"  {name} ...", end="", file=self.stream, flush=True)
        try:
            yield
        except BaseException:
            if not self.quiet:
                print(" failed", file=self.stream, flush=True)
            raise
        if not self.quiet:
            print(f" {time.perf_counter() - start:.1f}s", file=self.stream, flush=True)


@contextlib.contextmanager
def captured_native_output(enabled: bool = True, into: list[str] | None = None) -> Iterator[list[str]]:
    """Send everything converters print to a temporary file while they run.

    litert-torch prints progress with print(); TensorFlow's C++ logging, absl and XNNPACK write
    straight to file descriptors 1 and 2. Either would break ``--json`` on stdout and bury the progress
    display, so both levels are redirected: the descriptors, and sys.stdout / sys.stderr (which may
    not be the descriptors at all, under pytest or in a notebook). The captured text is handed back
    (a list that receives it, ``into`` when given) so that an error can keep it in a log file;
    with --verbose nothing is captured and the converters speak for themselves.
    """
    import io
    import os
    import tempfile
    import warnings

    captured: list[str] = into if into is not None else []  # ``into``: several stages, one log
    if not enabled:
        _native_sections.append(None)
        try:
            yield captured
        finally:
            _native_sections.pop()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = [os.dup(1), os.dup(2)]
    saved_streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text_sink = io.TextIOWrapper(sink, encoding="utf-8", errors="replace", write_through=True)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = text_sink
        _native_sections.append((saved_fds[0], saved_fds[1]))
        try:
            yield captured
        finally:
            _native_sections.pop()
            text_sink.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))
            text_sink.detach()


@contextlib.contextmanager
def stdout_reserved(enabled: bool = True) -> Iterator[None]:
    """Keep stdout for one machine-readable document: while the work runs, anything printed to
    stdout (user model code, libraries, native logs) goes to stderr instead."""
    import os

    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved_fd, saved_stream = os.dup(1), sys.stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = saved_stream
        os.dup2(saved_fd, 1)
        os.close(saved_fd)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt(value, spec: str = ".5f") -> str:
    return "-" if value is None else format(value, spec)
