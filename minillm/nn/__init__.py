"""Layers and containers, named as in torch.nn."""
from .. import functional
from .layers import (GELU, Conv1d, Dropout, Embedding, LayerNorm, Linear, MaxPool1d, ReLU,
                     Sigmoid, Tanh)
from .module import Module, ModuleList, Parameter, Sequential

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "Linear", "Embedding", "LayerNorm",
    "Dropout", "ReLU", "GELU", "Tanh", "Sigmoid", "Conv1d", "MaxPool1d", "functional",
]
