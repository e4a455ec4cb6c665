"""Core AI target (.aimodel): coreai-torch converts, coreai-opt compresses, coreai-core saves and
describes; the Core AI runtime itself executes only on iOS / macOS 27."""
from edgekit.targets.coreai.target import CoreAITarget

__all__ = ["CoreAITarget"]
