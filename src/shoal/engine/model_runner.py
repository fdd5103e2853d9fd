"""Runs one scheduled batch through the model: builds the paged-attention inputs, samples the next tokens.

Device-agnostic: plain torch on whatever device the model sits on.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from shoal.engine import ops
from shoal.engine.config import EngineConfig, ModelConfig
from shoal.engine.loader import load_model, torch_dtype
from shoal.engine.model import AttentionMetadata, build_cos_sin_cache
from shoal.engine.sampler import sample
from shoal.engine.scheduler import ScheduledSeq

CPU_KV_CACHE_BYTES = 1 << 30  # default KV pool on CPU when kv_cache_tokens is not given
GPU_MEMORY_UTILIZATION = 0.85
GPU_RESERVE_BYTES = 2 << 30  # activations and the allocator's slack


class ModelRunner:
    def __init__(self, config: EngineConfig, model_config: ModelConfig) -> None:
        self.config = config
        self.model_config = model_config
        self.device = _resolve_device(config.device)
        if self.device.type == "cpu" and os.environ.get("SHOAL_CPU_THREADS"):
            # Several engines sharing few cores run far faster with one thread each than fighting over all.
            torch.set_num_threads(int(os.environ["SHOAL_CPU_THREADS"]))
        self.dtype = torch_dtype(config.dtype)
        self.block_size = config.block_size
        self.model = load_model(
            config.model_dir, model_config, config.dtype, config.device, config.load_format, config.seed
        )
        self.num_blocks, self.max_model_len = self._size_kv_cache()
        shape = (self.num_blocks, self.block_size, model_config.num_kv_heads, model_config.head_dim)
        self.kv_caches = [
            (torch.zeros(shape, dtype=self.dtype, device=self.device), torch.zeros(shape, dtype=self.dtype, device=self.device))
            for _ in range(model_config.num_layers)
        ]
        self.cos_sin_cache = build_cos_sin_cache(model_config, self.max_model_len, self.device)
        self.graphs = self._capture_decode_graphs()

    @torch.inference_mode()
    def _capture_decode_graphs(self):
        """CUDA graphs of the decode step (GPU with the Triton kernels only: the torch ops sync the host)."""
        if self.device.type != "cuda" or not ops.USE_KERNELS or os.environ.get("SHOAL_CUDA_GRAPHS", "1") == "0":
            return None
        from shoal.engine.cuda_graphs import DecodeGraphs

        max_blocks = -(-self.max_model_len // self.block_size)
        return DecodeGraphs(self.model, self.kv_caches, self.cos_sin_cache, self.config.max_num_seqs, max_blocks,
                            self.device)

    @property
    def kv_bytes_per_token(self) -> int:
        mc = self.model_config
        return 2 * mc.num_layers * mc.num_kv_heads * mc.head_dim * self.dtype.itemsize

    def _size_kv_cache(self) -> tuple[int, int]:
        cfg, mc = self.config, self.model_config
        max_len = cfg.max_model_len or mc.max_position_embeddings
        if cfg.kv_cache_tokens is not None:
            tokens = cfg.kv_cache_tokens
            if tokens < max_len:
                raise ValueError(
                    f"kv_cache_tokens ({tokens}) must be >= max_model_len ({max_len}) so one full-length "
                    "request fits; raise kv_cache_tokens or lower max_model_len"
                )
        else:
            tokens = self._available_kv_bytes() // self.kv_bytes_per_token
            tokens = min(tokens, cfg.max_num_seqs * max_len)
            if cfg.max_model_len is None:
                max_len = min(max_len, tokens)
            if tokens < max_len:
                raise ValueError(
                    f"only {tokens} tokens of KV cache fit in memory, fewer than max_model_len ({max_len}); "
                    "lower max_model_len"
                )
        if mc.sliding_window and max_len > mc.sliding_window:
            # Full attention equals sliding-window attention only while the context fits in the window.
            if cfg.max_model_len is not None:
                raise ValueError(
                    f"max_model_len ({max_len}) exceeds the model's sliding_window ({mc.sliding_window}), "
                    "which this engine does not implement; lower max_model_len"
                )
            max_len = mc.sliding_window
        if max_len > mc.max_position_embeddings:
            raise ValueError(
                f"max_model_len ({max_len}) exceeds the model's max_position_embeddings ({mc.max_position_embeddings})"
            )
        return -(-tokens // self.block_size), max_len

    def _available_kv_bytes(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return max(0, int(free * GPU_MEMORY_UTILIZATION) - GPU_RESERVE_BYTES)
        return CPU_KV_CACHE_BYTES

    @torch.inference_mode()
    def execute(self, batch: list[ScheduledSeq], generators: list[torch.Generator | None]) -> list[int]:
        """Run the batch; returns the sampled token of every entry whose `samples` is true, in batch order.

        `batch` must list one-token entries (decodes) first. `generators` has one entry per sampling sequence.
        """
        input_ids, positions, meta, logits_indices = self._prepare(batch)
        if self.graphs is not None and meta.num_decodes == len(batch) and self.graphs.can_run(
            len(batch), meta.decode_block_tables.shape[1]
        ):
            hidden = self.graphs.run(
                input_ids, positions, meta.slot_mapping, meta.decode_block_tables, meta.decode_context_lens
            )
        else:
            hidden = self.model(input_ids, positions, self.kv_caches, self.cos_sin_cache, meta)
        if not logits_indices:
            return []
        if len(logits_indices) == hidden.shape[0]:  # every row samples (pure decode): no index upload, no host wait
            rows = hidden
        else:
            rows = hidden[torch.tensor(logits_indices, device=self.device)]
        logits = self.model.logits(rows)
        return sample(logits, [e.seq.params for e in batch if e.samples], generators)

    def _prepare(self, batch: list[ScheduledSeq]):
        # Index math in numpy: on the host, for a few hundred sequences, it is several times cheaper than torch ops.
        bs = self.block_size
        num = len(batch)
        q_lens = np.fromiter((e.num_new_tokens for e in batch), np.int64, num)
        starts = np.fromiter((e.seq.num_computed_tokens for e in batch), np.int64, num)
        samples = np.fromiter((e.samples for e in batch), np.bool_, num)
        tables = np.zeros((num, max(len(e.seq.block_table) for e in batch)), np.int32)
        tokens: list[int] = []
        for i, entry in enumerate(batch):
            seq = entry.seq
            tables[i, : len(seq.block_table)] = seq.block_table
            start = seq.num_computed_tokens
            tokens.extend(seq.token_slice(start, start + entry.num_new_tokens))
        cu = np.zeros(num + 1, np.int64)
        np.cumsum(q_lens, out=cu[1:])
        row = np.repeat(np.arange(num), q_lens)
        positions = starts[row] + np.arange(len(tokens)) - cu[:-1][row]
        slot_mapping = tables[row, positions // bs].astype(np.int64) * bs + positions % bs
        context_lens = (starts + q_lens).astype(np.int32)
        logits_indices = (cu[1:][samples] - 1).tolist()
        is_decode = q_lens == 1
        nd = num if is_decode.all() else int(np.argmin(is_decode))  # decodes come first
        dev = self.device
        has_prefill = nd < num

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

        meta = AttentionMetadata(
            slot_mapping=put(slot_mapping),
            num_decodes=nd,
            decode_block_tables=put(tables[:nd]) if nd else None,
            decode_context_lens=put(context_lens[:nd]) if nd else None,
            prefill_block_tables=put(tables[nd:]) if has_prefill else None,
            prefill_cu_seqlens_q=put((cu[nd:] - cu[nd]).astype(np.int32)) if has_prefill else None,
            prefill_context_lens=put(context_lens[nd:]) if has_prefill else None,
        )
        input_ids = torch.tensor(tokens, dtype=torch.int64, device=dev)
        return input_ids, put(positions), meta, logits_indices


def _resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r} is not a torch device (use cpu, cuda, cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available to this torch build or machine; use device='cpu'")
    return device
