"""The TFLite target's options (``target_options["tflite"]``, ``--tflite-int8-route``), typed and
checked before any model is loaded. Imports no ML framework."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.targets.base import TargetSettings, choice
from edgekit.targets.tflite.int8 import INT8_ROUTES
from edgekit.targets.tflite.int16x8 import HIGHER_MODES


@dataclass(frozen=True)
class TFLiteSettings(TargetSettings):
    #: how --quantize int8 is made (targets/tflite/int8.py): both and the better one, or one route
    int8_route: str = choice("auto", INT8_ROUTES, "--tflite-int8-route")
    #: the layers automatic mixed precision keeps above int8 (targets/tflite/int16x8.py): 16x8 where
    #: it meets the tolerance (auto), 16x8 wherever it builds (int16), or float as on other targets
    mixed_higher: str = choice("auto", HIGHER_MODES, "--tflite-mixed-higher")
