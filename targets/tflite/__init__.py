"""TFLite (LiteRT) target: litert-torch converts, ai-edge-quantizer quantizes, ai-edge-litert runs."""
from edgekit.targets.tflite.target import TFLiteTarget

__all__ = ["TFLiteTarget"]
