"""Decode steps replayed as captured CUDA graphs, one graph per padded batch size.

A decode step launches a few hundred small kernels; at small batches their launch cost, not the
GPU, sets the step time. Each graph runs the model forward for `bs` one-token sequences out of
static input buffers. A batch is padded up to the next captured size with rows that write no KV
(slot -1) and attend to nothing (length 0); the Triton kernels size their launches from shapes
only, never from lengths, so one capture serves every step.

The static inputs of the graph for `bs` rows are views of one int64 and one int32 device buffer,
laid out by `decode_regions(bs, max_blocks)` exactly as the host stages a decode step, so a step's
inputs arrive in two copies, with no device-side copies or fills.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from shoal.engine.model import AttentionMetadata
from shoal.engine.staging import regions

MAX_GRAPH_BATCH = 512  # larger decode batches run eagerly: launch cost is amortised there


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 16, up to the engine's sequence cap."""
    top = max(1, min(max_num_seqs, MAX_GRAPH_BATCH))
    sizes = {s for s in (1, 2, 4, 8) if s <= top} | set(range(16, top + 1, 16)) | {top}
    return sorted(sizes)


def padded_batch_size(sizes: list[int], n: int) -> int | None:
    """The smallest captured size holding n rows, or None when n is larger than all of them."""
    return next((s for s in sizes if s >= n), None)


@lru_cache(maxsize=1 << 14)  # called every decode step with a few recurring shapes
def decode_regions(rows: int, cols: int, gather: int = 0, fix: int = 0
                   ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """Where a pure-decode step's inputs sit, as [start, end) element ranges, in its two buffers.

    int64: input ids, positions, slots (`rows` each), the rows to sample (`gather`), pending-token
    destinations and sources (`fix` each). int32: context lengths (`rows`), block tables [rows, cols].
    Every part starts 16-byte aligned (Triton compiles a kernel variant per pointer alignment).
    """
    return tuple(regions([rows, rows, rows, gather, fix, fix], 2)), tuple(regions([rows, rows * cols], 4))


def pad_decode_rows(a64: np.ndarray, a32: np.ndarray, r64: tuple, r32: tuple, n: int, width: int) -> None:
    """Write the padding rows n.. of a decode layout (`decode_regions`): token 0 at position 0, no KV slot
    (-1), length 0.

    Their block-table entries below `width` are zeroed too, so everything a kernel or the torch reference
    could read is written (entries at or past `width` are never read: no row's context reaches them).
    """
    (i0, i1), (p0, p1), (s0, s1) = r64[:3]
    (c0, c1), (t0, t1) = r32
    rows = i1 - i0
    if n == rows:
        return
    a64[i0 + n : i1] = 0
    a64[p0 + n : p1] = 0
    a64[s0 + n : s1] = -1
    a32[c0 + n : c1] = 0
    a32[t0:t1].reshape(rows, -1)[n:, :width] = 0


@dataclass
class StagedDecode:
    """A pure-decode step of n sequences staged on the host for the graph of `bs` rows."""

    n: int
    bs: int
    r64: tuple[tuple[int, int], ...]  # decode_regions(bs, max_blocks, gather, fix)[0]
    host64: torch.Tensor  # [r64[-1][1]] int64, laid out by r64
    host32: torch.Tensor  # int32, laid out by decode_regions(bs, max_blocks)[1]


class DecodeGraphs:
    def __init__(self, model, kv_caches, cos_sin_cache, max_num_seqs: int, max_blocks_per_seq: int,
                 device: torch.device, capture: bool = True) -> None:
        """capture=False runs each step eagerly on the first n rows of the same static buffers: it checks the
        layout on a CPU, whose torch ops do not skip padding rows as the GPU kernels do."""
        self.sizes = graph_batch_sizes(max_num_seqs)
        top = self.sizes[-1]
        self.max_blocks_per_seq = cols = max_blocks_per_seq
        r64, r32 = decode_regions(top, cols, top, top)
        self.buf64 = torch.zeros(r64[-1][1], dtype=torch.int64, device=device)
        self.buf32 = torch.zeros(r32[-1][1], dtype=torch.int32, device=device)
        # the int32 part of each size's layout (lengths, tables) has a fixed size: its copy target, made once
        self._dst32 = {bs: self.buf32[: decode_regions(bs, cols)[1][-1][1]] for bs in self.sizes}
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self._args: dict[int, tuple] = {}
        self._model = model
        pool = None
        for bs in reversed(self.sizes):  # largest first: smaller graphs reuse its memory pool
            ids, positions, slots, context_lens, block_tables = self.static_inputs(bs)
            meta = AttentionMetadata(
                slot_mapping=slots, num_decodes=bs, decode_block_tables=block_tables, decode_context_lens=context_lens,
                prefill_block_tables=None, prefill_cu_seqlens_q=None, prefill_context_lens=None,
            )
            self._args[bs] = (ids, positions, kv_caches, cos_sin_cache, meta)
            if not capture:
                continue
            for zeros in (ids, positions, context_lens, block_tables):  # the sizes' layouts overlap
                zeros.zero_()
            slots.fill_(-1)
            model(*self._args[bs])  # compiles the kernels outside the capture; writes no KV (all slots are -1)
            torch.cuda.synchronize(device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[bs] = model(*self._args[bs])
            pool = graph.pool()
            self.graphs[bs] = graph
        if capture:
            torch.cuda.synchronize(device)

    def static_inputs(self, bs: int) -> tuple[torch.Tensor, ...]:
        """The graph's (input ids, positions, slots, context lengths, block tables [bs, max_blocks]) for bs rows."""
        cols = self.max_blocks_per_seq
        r64, r32 = decode_regions(bs, cols)
        ids, positions, slots = (self.buf64[s:e] for s, e in r64[:3])
        (c0, c1), (t0, t1) = r32
        return ids, positions, slots, self.buf32[c0:c1], self.buf32[t0:t1].view(bs, cols)

    def padded_size(self, num_seqs: int, table_width: int) -> int | None:
        """The graph size a decode step of num_seqs sequences runs at, or None when it must run eagerly."""
        if table_width > self.max_blocks_per_seq:
            return None
        return padded_batch_size(self.sizes, num_seqs)

    def load(self, staged: StagedDecode, pending_tokens: torch.Tensor | None) -> torch.Tensor | None:
        """Copy a staged step into the static buffers and take its pending input tokens from the last
        step's sampled tensor; returns the rows to sample, or None when every row samples."""
        n, r64 = staged.n, staged.r64
        self.buf64[: staged.host64.shape[0]].copy_(staged.host64, non_blocking=True)
        self._dst32[staged.bs].copy_(staged.host32, non_blocking=True)
        (i0, _), _, _, (g0, g1), (d0, d1), (s0, s1) = r64
        if d1 > d0:
            gather_pending(self.buf64[i0 : i0 + n], pending_tokens, self.buf64[d0:d1], self.buf64[s0:s1], n)
        return self.buf64[g0:g1] if g1 > g0 else None

    def run(self, staged: StagedDecode, pending_tokens: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(hidden states [n, hidden], the rows to sample or None for all) of a staged decode step:
        two copies into the static buffers, the pending-token gather, the replay."""
        logits_rows = self.load(staged, pending_tokens)
        n, bs = staged.n, staged.bs
        if bs in self.graphs:
            self.graphs[bs].replay()
            return self.outputs[bs][:n], logits_rows
        ids, positions, kv_caches, cos_sin_cache, meta = self._args[bs]
        rows = AttentionMetadata(
            slot_mapping=meta.slot_mapping[:n], num_decodes=n, decode_block_tables=meta.decode_block_tables[:n],
            decode_context_lens=meta.decode_context_lens[:n],
            prefill_block_tables=None, prefill_cu_seqlens_q=None, prefill_context_lens=None,
        )
        return self._model(ids[:n], positions[:n], kv_caches, cos_sin_cache, rows), logits_rows


def gather_pending(input_ids: torch.Tensor, tokens: torch.Tensor, dst: torch.Tensor, src: torch.Tensor,
                   total: int) -> None:
    """input_ids[dst] = tokens[src]: the input tokens still on the device, from the last step's samples.

    When every one of the `total` inputs is pending, dst is 0..total-1 in order (it lists them in batch
    order), and one index_select into input_ids does it.
    """
    if dst.shape[0] == total:
        torch.index_select(tokens, 0, src, out=input_ids)
    else:
        input_ids[dst] = tokens[src]
