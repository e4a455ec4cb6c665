"""TorchScript Lite target (legacy PyTorch Mobile .ptl): torch.jit captures, torch's lite interpreter runs."""
from edgekit.targets.torchscript_lite.target import TorchScriptLiteTarget

__all__ = ["TorchScriptLiteTarget"]
