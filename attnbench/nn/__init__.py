"""Shared model building blocks: multi-head attention that takes any variant, and the
encoder/decoder layers every task builds on."""

from attnbench.nn.attention import CheckedAttention, MultiheadAttention, build_attention
from attnbench.nn.classifier import SequenceClassifier
from attnbench.nn.layers import Decoder, DecoderLayer, Encoder, EncoderLayer

__all__ = [
    "CheckedAttention", "Decoder", "DecoderLayer", "Encoder", "EncoderLayer",
    "MultiheadAttention", "SequenceClassifier", "build_attention",
]
