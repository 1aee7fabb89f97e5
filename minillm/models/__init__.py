"""Models built from minillm.nn: the documents' history of language models, and the
transformer family (decoder-only GPT and Llama, encoder-only BERT, encoder–decoder T5-style)."""
from .base import LanguageModel, sample
from .bert import BertClassifier, BertConfig, BertEncoder, encode_batch, mask_tokens
from .encoder_decoder import EncoderDecoder, EncoderDecoderConfig, teacher_forcing_batch
from .gpt import GPT, GPTConfig
from .history import LSTMLM, MLPLM, NGramLM
from .llama import Llama, LlamaConfig
from .seed001 import Seed001LM

__all__ = ["LanguageModel", "sample", "GPT", "GPTConfig", "Llama", "LlamaConfig", "Seed001LM", "LSTMLM", "MLPLM", "NGramLM",
           "BertConfig", "BertEncoder", "BertClassifier", "mask_tokens", "encode_batch",
           "EncoderDecoder", "EncoderDecoderConfig", "teacher_forcing_batch"]
