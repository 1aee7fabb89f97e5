"""Models built from minillm.nn."""
from .gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
