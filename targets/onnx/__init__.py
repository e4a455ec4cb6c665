"""ONNX target: torch.onnx exports, onnxruntime's tools quantize, onnxruntime runs."""
from edgekit.targets.onnx.target import ONNXTarget

__all__ = ["ONNXTarget"]
