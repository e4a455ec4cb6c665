"""The ExecuTorch target's options (``target_options["executorch"]``: --delegate, --bundle,
--bundle-samples, --executorch-group-size), typed and checked before any model is loaded. Whether
the chosen delegate is in the installed executorch is asked at convert time (delegates.resolve).
Imports no ML framework."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.targets.base import TargetSettings, choice, number, switch
from edgekit.targets.executorch.bundle import DEFAULT_SAMPLES
from edgekit.targets.executorch.delegates import DEFAULT_DELEGATE, DELEGATES
from edgekit.targets.executorch.quantize import DEFAULT_GROUP_SIZE


@dataclass(frozen=True)
class ExecuTorchSettings(TargetSettings):
    delegate: str = choice(DEFAULT_DELEGATE, tuple(DELEGATES), "--delegate", lower=True)
    bundle: bool = switch(False, "--bundle")  # also write a BundledProgram (.bpte)
    bundle_samples: int = number(DEFAULT_SAMPLES, "--bundle-samples", minimum=1)
    group_size: int = number(DEFAULT_GROUP_SIZE, "--executorch-group-size", minimum=1)  # int8-int4 weights per group
