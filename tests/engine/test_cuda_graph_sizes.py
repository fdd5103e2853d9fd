"""The CUDA-graph batch sizes and the decode step's buffer layout are pure arithmetic: checked here on the CPU
(the capture itself runs on a GPU)."""

import numpy as np
import torch

from shoal.engine.cuda_graphs import (
    MAX_GRAPH_BATCH,
    DecodeGraphs,
    StagedDecode,
    decode_regions,
    graph_batch_sizes,
    pad_decode_rows,
    padded_batch_size,
)


def test_sizes_cover_every_batch_up_to_the_cap_with_little_padding():
    sizes = graph_batch_sizes(256)
    assert sizes[:5] == [1, 2, 4, 8, 16] and sizes[-1] == 256
    for n in range(1, 257):
        padded = padded_batch_size(sizes, n)
        assert padded >= n and padded - n < max(16, n // 2 + 1)
    assert padded_batch_size(sizes, 257) is None


def test_odd_caps_are_captured_exactly_and_large_caps_are_bounded():
    assert graph_batch_sizes(3) == [1, 2, 3]
    assert graph_batch_sizes(40)[-1] == 40
    assert graph_batch_sizes(10_000)[-1] == MAX_GRAPH_BATCH


def test_decode_layout_parts_are_aligned_disjoint_and_in_order():
    for rows, cols, gather, fix in [(1, 1, 0, 0), (3, 5, 2, 3), (16, 70, 0, 16), (255, 13, 7, 1)]:
        r64, r32 = decode_regions(rows, cols, gather, fix)
        assert [e - s for s, e in r64] == [rows, rows, rows, gather, fix, fix]
        assert [e - s for s, e in r32] == [rows, rows * cols]
        for parts, itemsize in ((r64, 8), (r32, 4)):
            assert all(s * itemsize % 16 == 0 for s, _ in parts)  # Triton specialises on 16-byte alignment
            assert all(e <= s2 for (_, e), (s2, _) in zip(parts, parts[1:]))
        # the graph's static inputs depend on rows and cols only: the variable parts come after them
        assert r64[:3] == decode_regions(rows, cols)[0][:3] and r32 == decode_regions(rows, cols)[1]


def test_padding_rows_write_no_kv_and_attend_to_nothing():
    rows, cols, n, width = 8, 6, 5, 4
    r64, r32 = decode_regions(rows, cols)
    a64 = np.full(r64[-1][1], 77, np.int64)  # poisoned: every padding value must be written
    a32 = np.full(r32[-1][1], 77, np.int32)
    pad_decode_rows(a64, a32, r64, r32, n, width)
    (i0, i1), (p0, p1), (s0, s1) = r64[:3]
    (c0, c1), (t0, t1) = r32
    assert (a64[i0 + n : i1] == 0).all() and (a64[p0 + n : p1] == 0).all() and (a64[s0 + n : s1] == -1).all()
    assert (a32[c0 + n : c1] == 0).all()
    tables = a32[t0:t1].reshape(rows, cols)
    assert (tables[n:, :width] == 0).all() and (tables[n:, width:] == 77).all()
    assert (a64[i0 : i0 + n] == 77).all() and (a32[c0 : c0 + n] == 77).all()  # real rows untouched
    pad_decode_rows(a64, a32, r64, r32, rows, width)  # a full batch has no padding


def test_each_graph_size_reads_its_inputs_where_the_host_layout_puts_them():
    graphs = DecodeGraphs(lambda *args: None, None, None, max_num_seqs=40, max_blocks_per_seq=7,
                          device=torch.device("cpu"), capture=False)
    for bs in graphs.sizes:
        r64, r32 = decode_regions(bs, 7)
        host64 = torch.arange(r64[-1][1], dtype=torch.int64)
        host32 = torch.arange(r32[-1][1], dtype=torch.int32)
        graphs.load(StagedDecode(n=bs, bs=bs, r64=r64, host64=host64, host32=host32), None)
        ids, positions, slots, context_lens, block_tables = graphs.static_inputs(bs)
        for view, (s, e) in zip((ids, positions, slots), r64):
            assert view.tolist() == list(range(s, e)) and view.data_ptr() % 16 == 0
        (c0, c1), (t0, t1) = r32
        assert context_lens.tolist() == list(range(c0, c1)) and context_lens.data_ptr() % 16 == 0
        assert block_tables.flatten().tolist() == list(range(t0, t1)) and block_tables.data_ptr() % 16 == 0
