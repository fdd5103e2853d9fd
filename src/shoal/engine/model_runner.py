"""Runs one scheduled batch through the model: builds the paged-attention inputs, samples the next tokens.

Device-agnostic: plain torch on whatever device the model sits on.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch

from shoal.engine import ops
from shoal.engine.config import EngineConfig, ModelConfig
from shoal.engine.loader import load_model, torch_dtype
from shoal.engine.model import AttentionMetadata, build_cos_sin_cache
from shoal.engine.sampler import sample_on_device
from shoal.engine.scheduler import ScheduledSeq
from shoal.engine.staging import PinnedStaging

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
        self.staging = PinnedStaging(self.device)

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
        return self.launch(batch, generators).tolist()

    @torch.inference_mode()
    def launch(self, batch: list[ScheduledSeq], generators: list[torch.Generator | None],
               pending: PendingTokens | None = None) -> PendingTokens:
        """Start the batch on the device and return its sampled tokens without waiting for them.

        A decode entry whose seq.pending_step equals `pending.step` has not got its input token on the
        host yet: it is taken on the device from row seq.pending_row of `pending`.
        """
        input_ids, positions, meta, logits_indices, num_samples = self._prepare(batch, pending)
        if self.graphs is not None and meta.num_decodes == len(batch) and self.graphs.can_run(
            len(batch), meta.decode_block_tables.shape[1]
        ):
            hidden = self.graphs.run(
                input_ids, positions, meta.slot_mapping, meta.decode_block_tables, meta.decode_context_lens
            )
        else:
            hidden = self.model(input_ids, positions, self.kv_caches, self.cos_sin_cache, meta)
        if not num_samples:
            self.staging.end()
            return PendingTokens.done(torch.empty(0, dtype=torch.int64))
        # Every row samples in a pure decode step: no gather needed.
        rows = hidden if logits_indices is None else hidden[logits_indices]
        logits = self.model.logits(rows)
        tokens = sample_on_device(logits, [e.seq.params for e in batch if e.samples], generators,
                                  self.staging.upload)
        if not self.staging.pinned:
            self.staging.end()
            return PendingTokens.done(tokens)
        host = self.staging.take(num_samples, torch.int64)
        host.copy_(tokens, non_blocking=True)
        return PendingTokens(tokens, host, self.staging.end())

    def _prepare(self, batch: list[ScheduledSeq], pending: PendingTokens | None):
        # Index math in numpy: on the host, for a few hundred sequences, it is several times cheaper than torch ops.
        bs = self.block_size
        num = len(batch)
        q_lens = np.fromiter((e.num_new_tokens for e in batch), np.int64, num)
        starts = np.fromiter((e.seq.num_computed_tokens for e in batch), np.int64, num)
        samples = np.fromiter((e.samples for e in batch), np.bool_, num)
        widths = np.fromiter((len(e.seq.block_table) for e in batch), np.int64, num)
        cu = np.zeros(num + 1, np.int64)
        np.cumsum(q_lens, out=cu[1:])
        total = int(cu[-1])
        width = int(widths.max())
        is_decode = q_lens == 1
        nd = num if is_decode.all() else int(np.argmin(is_decode))  # decodes come first
        has_prefill = nd < num
        num_samples = int(samples.sum())
        gather = has_prefill or num_samples != num
        fix = [] if pending is None else [
            (int(cu[i]), e.seq.pending_row) for i, e in enumerate(batch) if e.seq.pending_step == pending.step
        ]
        # One int64 and one int32 host buffer (pinned on CUDA), each uploaded with one copy. Every part starts
        # 16-byte aligned: Triton compiles a kernel variant per pointer alignment, and a variant compiled
        # mid-run costs about a second.
        r64 = _regions([total, total, total, num_samples if gather else 0, len(fix), len(fix)], 2)
        nw = num - nd
        r32 = _regions([nd, nw, nd * width, nw * width, nw + 1 if has_prefill else 0], 4)
        # ...and room for the sampler's per-row parameters and the sampled tokens' way back.
        self.staging.begin(8 * r64[-1][1] + 4 * r32[-1][1] + 32 * num)
        h64 = self.staging.take(r64[-1][1], torch.int64)
        h32 = self.staging.take(r32[-1][1], torch.int32)
        a64, a32 = h64.numpy(), h32.numpy()
        ids, pos, slots, lidx, fdst, fsrc = (a64[s:e] for s, e in r64)
        ctx_d, ctx_p, tab_d, tab_p, cu_p = (a32[s:e] for s, e in r32)
        if num_samples == num and nd == num:  # pure decode: one token each, the last one
            ids[:] = np.fromiter((e.seq.last_token_id for e in batch), np.int64, num)
        else:
            tokens: list[int] = []
            for entry in batch:
                start = entry.seq.num_computed_tokens
                tokens.extend(entry.seq.token_slice(start, start + entry.num_new_tokens))
            ids[:] = tokens
        np.maximum(ids, 0, out=ids)  # a pending token's placeholder: any valid id until the device fills it in
        tables = np.zeros((num, width), np.int32)
        mask = np.arange(width)[None, :] < widths[:, None]
        tables[mask] = np.fromiter(itertools.chain.from_iterable(e.seq.block_table for e in batch), np.int32,
                                   int(widths.sum()))
        tab_d[:] = tables[:nd].reshape(-1)
        tab_p[:] = tables[nd:].reshape(-1)
        row = np.repeat(np.arange(num), q_lens) if has_prefill else np.arange(num)
        pos[:] = starts[row] + np.arange(total) - cu[:-1][row]
        slots[:] = tables[row, pos // bs].astype(np.int64) * bs + pos % bs
        ctx = starts + q_lens
        ctx_d[:], ctx_p[:] = ctx[:nd], ctx[nd:]
        if gather:
            lidx[:] = (cu[1:] - 1)[samples]
        if fix:
            fdst[:], fsrc[:] = zip(*fix)
        if has_prefill:
            cu_p[:] = cu[nd:] - cu[nd]
        dev = self.device
        d64, d32 = h64.to(dev, non_blocking=True), h32.to(dev, non_blocking=True)
        input_ids, positions, slot_mapping, d_lidx, d_fdst, d_fsrc = (d64[s:e] for s, e in r64)
        d_ctx_d, d_ctx_p, d_tab_d, d_tab_p, d_cu_p = (d32[s:e] for s, e in r32)
        if fix:
            input_ids[d_fdst] = pending.tokens[d_fsrc]
        meta = AttentionMetadata(
            slot_mapping=slot_mapping,
            num_decodes=nd,
            decode_block_tables=d_tab_d.view(nd, width) if nd else None,
            decode_context_lens=d_ctx_d if nd else None,
            prefill_block_tables=d_tab_p.view(nw, width) if has_prefill else None,
            prefill_cu_seqlens_q=d_cu_p if has_prefill else None,
            prefill_context_lens=d_ctx_p if has_prefill else None,
        )
        return input_ids, positions, meta, d_lidx if gather else None, num_samples


def _regions(sizes: list[int], align: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive parts of the given sizes, each start a multiple of `align` elements."""
    out, at = [], 0
    for n in sizes:
        at = -(-at // align) * align
        out.append((at, at + n))
        at += n
    return out


class PendingTokens:
    """The tokens one launched step sampled: on CUDA still in flight (copied to pinned memory behind an event)."""

    _steps = itertools.count(1)

    def __init__(self, tokens: torch.Tensor, host: torch.Tensor, event) -> None:
        self.step = next(PendingTokens._steps)  # tells sequences whose input token comes from this step
        self.tokens = tokens  # [n] int64 on the model's device
        self._host = host
        self._event = event

    @classmethod
    def done(cls, tokens: torch.Tensor) -> PendingTokens:
        return cls(tokens, tokens, None)

    def tolist(self) -> list[int]:
        if self._event is not None:
            self._event.synchronize()  # the only host wait of a step
        return self._host.tolist()


def _resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r} is not a torch device (use cpu, cuda, cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available to this torch build or machine; use device='cpu'")
    return device
