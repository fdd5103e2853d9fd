"""The CUDA-graph batch sizes are pure arithmetic: checked here on the CPU (the capture itself runs on a GPU)."""

from shoal.engine.cuda_graphs import MAX_GRAPH_BATCH, graph_batch_sizes, padded_batch_size


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
