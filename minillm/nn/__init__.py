"""Layers and containers, named as in torch.nn."""
from .. import functional
from .layers import (GELU, Conv1d, Dropout, Embedding, LayerNorm, Linear, MaxPool1d, ReLU,
                     Sigmoid, Tanh)
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from . import utils
from .module import Module, ModuleList, Parameter, Sequential
from .transformer import MLP, CausalSelfAttention, KVCache, MultiHeadAttention, PositionalEncoding, TransformerBlock

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "Linear", "Embedding", "LayerNorm",
    "Dropout", "ReLU", "GELU", "Tanh", "Sigmoid", "Conv1d", "MaxPool1d", "functional",
    "MultiHeadAttention", "CausalSelfAttention", "LSTM", "LSTMCell", "GRU", "GRUCell", "RNN", "RNNCell", "utils",
    "TransformerBlock", "PositionalEncoding", "KVCache", "MLP",
]
