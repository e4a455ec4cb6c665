"""The Core AI target's options: none yet. Declared all the same, so that a key given for it
(``target_options["coreai"]``, ``[convert.options.coreai]``) is refused, not ignored."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.targets.base import TargetSettings


@dataclass(frozen=True)
class CoreAISettings(TargetSettings):
    pass
