"""Making a trained model smaller and faster (documents 000 ch.5–6): int8 quantisation,
pruning, knowledge distillation, low-rank factorisation — and ``compression_table`` that
measures each against the fp32 baseline."""
from .distill import distill, distillation_loss
from .lowrank import LowRankLinear, factorize, factorize_model
from .prune import Masks, prune_heads, prune_magnitude, prune_neurons
from .quantize import (Int8WeightLinear, QuantizedLinear, quantize_model, quantize_symmetric, quantize_weights,
                       quantized_state)
from .report import compression_table

__all__ = ["quantize_symmetric", "quantize_model", "quantize_weights", "quantized_state", "QuantizedLinear",
           "Int8WeightLinear", "prune_magnitude", "prune_heads", "prune_neurons", "Masks", "distill",
           "distillation_loss", "factorize", "factorize_model", "LowRankLinear", "compression_table"]
