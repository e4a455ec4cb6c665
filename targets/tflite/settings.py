"""The TFLite target's options (``target_options["tflite"]``, ``--tflite-int8-route``), typed and
checked before any model is loaded. Imports no ML framework."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.targets.base import TargetSettings, choice
from edgekit.targets.tflite.int8 import INT8_ROUTES


@dataclass(frozen=True)
class TFLiteSettings(TargetSettings):
    #: how --quantize int8 is made (targets/tflite/int8.py): both and the better one, or one route
    int8_route: str = choice("auto", INT8_ROUTES, "--tflite-int8-route")
