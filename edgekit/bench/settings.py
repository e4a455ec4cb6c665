"""What one bench run asks for: validated once, handed to every device and runner."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from edgekit.constants import BENCH_TIMEOUT_S
from edgekit.errors import UsageError

RUNNER_NAMES = ("python", "benchmark_model", "executor_runner", "android-app", "ios-app")
DEFAULT_TIMEOUT_S = BENCH_TIMEOUT_S


@dataclass(frozen=True)
class BenchSettings:
    threads: int = 1
    warmup: int = 5
    runs: int = 50
    min_time: float | None = None
    timeout: float = DEFAULT_TIMEOUT_S  # per artifact and device
    data: str | None = None
    # adb: runner binaries (benchmark_model, executor_runner) or "android-app"; empty: the defaults
    runner: tuple[str, ...] | str | None = ()
    cpu_mask: str | None = None  # adb: taskset mask (hex), e.g. f0 for the big cores of many phones
    seed: int = 0
    app: str | None = None  # android: PACKAGE[/ACTIVITY]; ios: bundle id of the sample app
    ssh_config: str | None = None
    peak: bool = True  # probe the machine's GEMM peak (cached) for the share-of-peak column
    rounds: int = 1  # repeated measurements of each artifact (fresh process each): a confidence interval

    def __post_init__(self):
        if self.runner is None or isinstance(self.runner, str):
            object.__setattr__(self, "runner", () if not self.runner else (self.runner,))
        else:
            object.__setattr__(self, "runner", tuple(self.runner))
        if self.threads < 1:
            raise UsageError(f"--threads must be 1 or more, got {self.threads}")
        if self.rounds < 1:
            raise UsageError(f"--rounds must be 1 or more, got {self.rounds}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.runs < 1:
            raise UsageError(f"--runs must be 1 or more, got {self.runs}")
        if self.min_time is not None and self.min_time <= 0:
            raise UsageError(f"--min-time must be positive, got {self.min_time}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        if self.cpu_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", self.cpu_mask):
            raise UsageError(f"--cpu-mask {self.cpu_mask!r}: expected a hex CPU mask such as f0")
        if self.data is not None and not os.path.exists(self.data):
            raise UsageError(f"--data {self.data}: no such file or folder")
        for item in self.runner:
            if item not in RUNNER_NAMES and not os.path.isfile(item):
                raise UsageError(f"--runner {item}: neither a runner name ({', '.join(RUNNER_NAMES)}) nor an existing file")

    def runners(self) -> tuple[str, ...]:
        return self.runner  # type: ignore[return-value]

    def as_record(self, runner_name: str, inputs: str | None = None) -> dict:
        """The settings section of a result record."""
        return {
            "threads": self.threads, "warmup": self.warmup, "runs": self.runs, "min_time_s": self.min_time,
            "inputs": inputs or self.data or "random", "runner": runner_name,
        }
