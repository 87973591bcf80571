"""NExT-Chat inference on current torch / transformers / segment-anything."""

from .checkpoint import CheckpointError
from .decoding import GenerationStopped
from .nextchat import NextChat
from .results import Answer, Caption, GenerationResult, Region

__all__ = ["NextChat", "GenerationResult", "Region", "Caption", "Answer", "CheckpointError", "GenerationStopped"]
