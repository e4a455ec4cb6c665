"""The Core AI runtime (coreai.runtime.AIModel) executes only on Apple platforms with Core AI (iOS /
macOS 27). edgekit can describe an .aimodel anywhere (its program is read through coreai-core's own
bindings) but does not execute it: ``run`` raises a DeviceError saying so."""
from __future__ import annotations

import platform
from typing import Sequence

from edgekit.errors import DeviceError
from edgekit.targets.base import Runtime, package_version
from edgekit.targets.coreai import analysis

NOT_ON_THIS_HOST = ("numerical parity not run: the Core AI runtime executes only on iOS / macOS 27, and edgekit's "
                    "reference interpreter reads Core ML ML Programs, not Core AI programs (coreai.* ops)")


class CoreAIRuntime(Runtime):
    def __init__(self):
        self.path: str | None = None
        self._inputs = []
        self._outputs = []

    def load(self, path: str, threads: int = 1) -> "CoreAIRuntime":
        asset = analysis.load_asset(path)
        self._inputs, self._outputs = analysis.io_specs(asset)
        self.path = str(path)
        return self

    def run(self, inputs: Sequence) -> list:
        raise DeviceError(
            f"cannot run {self.path}: edgekit does not execute Core AI programs "
            f"(the Core AI runtime needs iOS / macOS 27; this host is {platform.system()})",
            hint="load it with coreai.runtime.AIModel on a Mac with macOS 27, or in an iOS 27 app",
        )

    def version(self) -> str:
        return f"coreai-core {package_version('coreai-core')} (describes only; {platform.system()})"
