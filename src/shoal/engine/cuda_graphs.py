"""Decode steps replayed as captured CUDA graphs, one graph per padded batch size.

A decode step launches a few hundred small kernels; at small batches their launch cost, not the
GPU, sets the step time. Each graph runs the model forward for `bs` one-token sequences out of
static input buffers. A batch is padded up to the next captured size with rows that write no KV
(slot -1) and attend to nothing (length 0); the Triton kernels size their launches from shapes
only, never from lengths, so one capture serves every step.
"""

from __future__ import annotations

import torch

from shoal.engine.model import AttentionMetadata

MAX_GRAPH_BATCH = 512  # larger decode batches run eagerly: launch cost is amortised there


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 16, up to the engine's sequence cap."""
    top = max(1, min(max_num_seqs, MAX_GRAPH_BATCH))
    sizes = {s for s in (1, 2, 4, 8) if s <= top} | set(range(16, top + 1, 16)) | {top}
    return sorted(sizes)


def padded_batch_size(sizes: list[int], n: int) -> int | None:
    """The smallest captured size holding n rows, or None when n is larger than all of them."""
    return next((s for s in sizes if s >= n), None)


class DecodeGraphs:
    def __init__(self, model, kv_caches, cos_sin_cache, max_num_seqs: int, max_blocks_per_seq: int,
                 device: torch.device) -> None:
        self.sizes = graph_batch_sizes(max_num_seqs)
        top = self.sizes[-1]
        self.max_blocks_per_seq = max_blocks_per_seq
        self.input_ids = torch.zeros(top, dtype=torch.int64, device=device)
        self.positions = torch.zeros(top, dtype=torch.int64, device=device)
        self.slot_mapping = torch.full((top,), -1, dtype=torch.int64, device=device)
        self.block_tables = torch.zeros(top, max_blocks_per_seq, dtype=torch.int32, device=device)
        self.context_lens = torch.zeros(top, dtype=torch.int32, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        pool = None
        for bs in reversed(self.sizes):  # largest first: smaller graphs reuse its memory pool
            meta = AttentionMetadata(
                slot_mapping=self.slot_mapping[:bs], num_decodes=bs,
                decode_block_tables=self.block_tables[:bs], decode_context_lens=self.context_lens[:bs],
                prefill_block_tables=None, prefill_cu_seqlens_q=None, prefill_context_lens=None,
            )
            args = (self.input_ids[:bs], self.positions[:bs], kv_caches, cos_sin_cache, meta)
            model(*args)  # compiles the kernels outside the capture; writes no KV (all slots are -1)
            torch.cuda.synchronize(device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[bs] = model(*args)
            pool = graph.pool()
            self.graphs[bs] = graph
        torch.cuda.synchronize(device)

    def can_run(self, num_seqs: int, table_width: int) -> bool:
        return num_seqs <= self.sizes[-1] and table_width <= self.max_blocks_per_seq

    def run(self, input_ids, positions, slot_mapping, block_tables, context_lens) -> torch.Tensor:
        """Hidden states [n, hidden] for n one-token sequences (inputs already on the device)."""
        n = input_ids.shape[0]
        bs = padded_batch_size(self.sizes, n)
        self.input_ids[:n].copy_(input_ids)
        self.positions[:n].copy_(positions)
        self.slot_mapping[:n].copy_(slot_mapping)
        self.slot_mapping[n:bs].fill_(-1)
        self.context_lens[:n].copy_(context_lens)
        self.context_lens[n:bs].fill_(0)
        self.block_tables[:n, : block_tables.shape[1]].copy_(block_tables)
        self.graphs[bs].replay()
        return self.outputs[bs][:n]
