"""ExecuTorch target: torch.export -> to_edge_transform_and_lower (XNNPACK by default) -> .pte,
verified with executorch's Python runtime."""
from edgekit.targets.executorch.target import ExecuTorchTarget

__all__ = ["ExecuTorchTarget"]
