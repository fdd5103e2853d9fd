"""Runs one scheduled batch through the model: builds the paged-attention inputs, samples the next tokens.

Device-agnostic: plain torch on whatever device the model sits on.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch

from shoal.engine import ops
from shoal.engine.block_tables import BlockTableMirror
from shoal.engine.config import EngineConfig, ModelConfig
from shoal.engine.cuda_graphs import StagedDecode, decode_regions, gather_pending, pad_decode_rows
from shoal.engine.loader import load_model, torch_dtype
from shoal.engine.model import AttentionMetadata, build_cos_sin_cache
from shoal.engine.sampler import sample_on_device
from shoal.engine.scheduler import ScheduledSeq
from shoal.engine.staging import PinnedStaging, regions

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
        self.max_blocks_per_seq = -(-self.max_model_len // self.block_size)
        self.graphs = self._capture_decode_graphs()
        self.staging = PinnedStaging(self.device)
        self.block_tables = BlockTableMirror(self.max_blocks_per_seq, config.max_num_seqs)

    @torch.inference_mode()
    def _capture_decode_graphs(self):
        """CUDA graphs of the decode step (GPU with the Triton kernels only: the torch ops sync the host)."""
        if self.device.type != "cuda" or not ops.USE_KERNELS or os.environ.get("SHOAL_CUDA_GRAPHS", "1") == "0":
            return None
        from shoal.engine.cuda_graphs import DecodeGraphs

        return DecodeGraphs(self.model, self.kv_caches, self.cos_sin_cache, self.config.max_num_seqs,
                            self.max_blocks_per_seq, self.device)

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
        inputs, logits_indices, num_samples = self._prepare(batch, pending)
        if isinstance(inputs, StagedDecode):
            hidden, logits_indices = self.graphs.run(inputs, pending.tokens if pending is not None else None)
        else:
            hidden = self.model(*inputs[:2], self.kv_caches, self.cos_sin_cache, inputs[2])
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
        """(inputs, logits_indices, num_samples): inputs is a StagedDecode for a CUDA-graph step, else
        (input_ids, positions, AttentionMetadata) on the device; logits_indices None when every row samples."""
        rows, width = self.block_tables.update([e.seq for e in batch])
        if batch[-1].num_new_tokens == 1:  # decodes come first, so all are decodes
            bs = self.graphs.padded_size(len(batch), width) if self.graphs is not None else None
            return self._prepare_decode(batch, rows, width, pending, bs)
        return self._prepare_mixed(batch, rows, width, pending)

    def _prepare_decode(self, batch, rows: np.ndarray, width: int, pending: PendingTokens | None, bs: int | None):
        """A step of one-token entries, laid out by decode_regions: for the graph of `bs` rows (padding
        rows past the batch), or for the eager model (bs None: rows and table width of the batch itself)."""
        num = len(batch)
        step = pending.step if pending is not None else None
        starts, tokens, sampled, fdst, fsrc = [], [], [], [], []
        for i, entry in enumerate(batch):
            seq = entry.seq
            start = seq.num_computed_tokens
            starts.append(start)
            if entry.samples:  # its one token is the last one
                sampled.append(i)
                tokens.append(seq.last_token_id)
            else:  # a prompt's chunk of one token
                tokens.append(seq.token_slice(start, start + 1)[0])
            if seq.pending_step == step:
                fdst.append(i)
                fsrc.append(seq.pending_row)
        num_samples = len(sampled)
        gather = num_samples if num_samples != num else 0
        cols = width if bs is None else self.graphs.max_blocks_per_seq
        r64, r32 = decode_regions(num if bs is None else bs, cols, gather, len(fdst))
        self.staging.begin(8 * r64[-1][1] + 4 * r32[-1][1] + 32 * num)
        h64 = self.staging.take(r64[-1][1], torch.int64)
        h32 = self.staging.take(r32[-1][1], torch.int32)
        a64, a32 = h64.numpy(), h32.numpy()
        ids, pos, slots, lidx, d_fix, s_fix = (a64[s:e] for s, e in r64)
        (c0, _), (t0, t1) = r32
        pos = pos[:num]
        pos[:] = starts
        ids = ids[:num]
        ids[:] = tokens
        np.maximum(ids, 0, out=ids)  # a pending token's placeholder: any valid id until the device fills it in
        tables = self.block_tables.table
        block, offset = np.divmod(pos, self.block_size)
        np.multiply(tables[rows, block], self.block_size, out=slots[:num])
        slots[:num] += offset
        np.add(pos, 1, out=a32[c0 : c0 + num])
        # Graph layout: a row's entries past `width` keep what the staging buffer held; no context reaches them.
        a32[t0:t1].reshape(-1, cols)[:num, :width] = tables[rows, :width]
        if gather:
            lidx[:] = sampled
        if fdst:
            d_fix[:], s_fix[:] = fdst, fsrc
        if bs is not None:
            pad_decode_rows(a64, a32, r64, r32, num, width)
            return StagedDecode(num, bs, r64, h64, h32), None, num_samples
        dev = self.device
        d64, d32 = h64.to(dev, non_blocking=True), h32.to(dev, non_blocking=True)
        input_ids, positions, slot_mapping, d_lidx, d_fdst, d_fsrc = (d64[s:e] for s, e in r64)
        if fdst:
            gather_pending(input_ids, pending.tokens, d_fdst, d_fsrc, num)
        meta = AttentionMetadata(
            slot_mapping=slot_mapping, num_decodes=num,
            decode_block_tables=d32[t0:t1].view(num, width), decode_context_lens=d32[c0 : c0 + num],
            prefill_block_tables=None, prefill_cu_seqlens_q=None, prefill_context_lens=None,
        )
        return (input_ids, positions, meta), d_lidx if gather else None, num_samples

    def _prepare_mixed(self, batch, rows: np.ndarray, width: int, pending: PendingTokens | None):
        """A step with prefill chunks (entries of more than one token after the decodes)."""
        # Index math in numpy: on the host, for a few hundred sequences, it is several times cheaper than torch ops.
        bs = self.block_size
        num = len(batch)
        q_lens = np.fromiter((e.num_new_tokens for e in batch), np.int64, num)
        starts = np.fromiter((e.seq.num_computed_tokens for e in batch), np.int64, num)
        samples = np.fromiter((e.samples for e in batch), np.bool_, num)
        cu = np.zeros(num + 1, np.int64)
        np.cumsum(q_lens, out=cu[1:])
        total = int(cu[-1])
        nd = int(np.argmin(q_lens == 1))  # decodes come first, and the last entry is not one
        num_samples = int(samples.sum())
        fix = [] if pending is None else [
            (int(cu[i]), e.seq.pending_row) for i, e in enumerate(batch) if e.seq.pending_step == pending.step
        ]
        # One int64 and one int32 host buffer (pinned on CUDA), each uploaded with one copy. Every part starts
        # 16-byte aligned: Triton compiles a kernel variant per pointer alignment, and a variant compiled
        # mid-run costs about a second.
        r64 = regions([total, total, total, num_samples, len(fix), len(fix)], 2)
        nw = num - nd
        r32 = regions([nd, nw, nd * width, nw * width, nw + 1], 4)
        # ...and room for the sampler's per-row parameters and the sampled tokens' way back.
        self.staging.begin(8 * r64[-1][1] + 4 * r32[-1][1] + 32 * num)
        h64 = self.staging.take(r64[-1][1], torch.int64)
        h32 = self.staging.take(r32[-1][1], torch.int32)
        a64, a32 = h64.numpy(), h32.numpy()
        ids, pos, slots, lidx, fdst, fsrc = (a64[s:e] for s, e in r64)
        ctx_d, ctx_p, tab_d, tab_p, cu_p = (a32[s:e] for s, e in r32)
        tokens: list[int] = []
        for entry in batch:
            start = entry.seq.num_computed_tokens
            tokens.extend(entry.seq.token_slice(start, start + entry.num_new_tokens))
        ids[:] = tokens
        np.maximum(ids, 0, out=ids)  # a pending token's placeholder: any valid id until the device fills it in
        tables = self.block_tables.table[rows, :width]
        tab_d[:] = tables[:nd].reshape(-1)
        tab_p[:] = tables[nd:].reshape(-1)
        row = np.repeat(np.arange(num), q_lens)
        pos[:] = starts[row] + np.arange(total) - cu[:-1][row]
        slots[:] = tables[row, pos // bs].astype(np.int64) * bs + pos % bs
        ctx = starts + q_lens
        ctx_d[:], ctx_p[:] = ctx[:nd], ctx[nd:]
        lidx[:] = (cu[1:] - 1)[samples]
        if fix:
            fdst[:], fsrc[:] = zip(*fix)
        cu_p[:] = cu[nd:] - cu[nd]
        dev = self.device
        d64, d32 = h64.to(dev, non_blocking=True), h32.to(dev, non_blocking=True)
        input_ids, positions, slot_mapping, d_lidx, d_fdst, d_fsrc = (d64[s:e] for s, e in r64)
        d_ctx_d, d_ctx_p, d_tab_d, d_tab_p, d_cu_p = (d32[s:e] for s, e in r32)
        if fix:
            gather_pending(input_ids, pending.tokens, d_fdst, d_fsrc, total)
        meta = AttentionMetadata(
            slot_mapping=slot_mapping,
            num_decodes=nd,
            decode_block_tables=d_tab_d.view(nd, width) if nd else None,
            decode_context_lens=d_ctx_d if nd else None,
            prefill_block_tables=d_tab_p.view(nw, width),
            prefill_cu_seqlens_q=d_cu_p,
            prefill_context_lens=d_ctx_p,
        )
        return (input_ids, positions, meta), d_lidx, num_samples


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
