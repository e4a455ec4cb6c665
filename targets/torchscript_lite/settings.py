"""The TorchScript Lite target's options (``target_options["torchscript-lite"]``, --ptl-script),
typed and checked before any model is loaded. Imports no ML framework."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.targets.base import TargetSettings, switch


@dataclass(frozen=True)
class TorchScriptLiteSettings(TargetSettings):
    script: bool = switch(False, "--ptl-script")  # torch.jit.script instead of torch.jit.trace
