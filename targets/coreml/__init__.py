"""Core ML target: coremltools converts (ML Program .mlpackage or legacy .mlmodel), compresses and
describes; Core ML itself executes only on macOS."""
from edgekit.targets.coreml.target import CoreMLTarget

__all__ = ["CoreMLTarget"]
