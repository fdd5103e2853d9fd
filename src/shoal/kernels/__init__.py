"""Triton kernels for the engine's GPU path, each beside the PyTorch reference it is tested against.

Shapes follow the paged KV layout of INTERFACES.md: caches are [num_blocks, page, Hk, D].
Importing this package imports Triton; the engine does so only when a tensor is on CUDA.
"""

from .activation import silu_and_mul, silu_and_mul_ref
from .decode_attention import choose_num_splits, paged_decode_attention, paged_decode_attention_ref
from .kv_cache import write_kv, write_kv_ref
from .prefill_attention import paged_prefill_attention, paged_prefill_attention_ref, prefill_tile_starts, tile_block_m
from .rms_norm import rms_norm, rms_norm_ref
from .rotary import build_cos_sin_cache, rope_inv_freq, rotary_embedding, rotary_embedding_ref

__all__ = [
    "build_cos_sin_cache",
    "choose_num_splits",
    "paged_decode_attention",
    "paged_decode_attention_ref",
    "paged_prefill_attention",
    "paged_prefill_attention_ref",
    "prefill_tile_starts",
    "rms_norm",
    "rms_norm_ref",
    "rope_inv_freq",
    "rotary_embedding",
    "rotary_embedding_ref",
    "silu_and_mul",
    "silu_and_mul_ref",
    "tile_block_m",
    "write_kv",
    "write_kv_ref",
]
