"""BlockManager alone: unit cases and hypothesis-driven sequences of operations."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.engine.block_manager import BlockManager, chain_hash


def test_allocate_grow_free():
    bm = BlockManager(num_blocks=4, block_size=4)
    table: list[int] = []
    bm.allocate(table, 5)
    assert len(table) == 2 and bm.num_free_blocks == 2 and bm.usage == 0.5
    bm.allocate(table, 8)  # still fits in two blocks
    assert len(table) == 2
    assert bm.blocks_needed(table, 13) == 2 and bm.can_allocate(2) and not bm.can_allocate(3)
    with pytest.raises(RuntimeError, match="out of KV blocks"):
        bm.allocate(table, 17)
    bm.free_table(table)
    assert table == [] and bm.num_free_blocks == 4 and bm.usage == 0.0


def test_prefix_cache_reuses_committed_full_blocks_only():
    bm = BlockManager(num_blocks=8, block_size=4)
    tokens = list(range(10))
    a: list[int] = []
    bm.allocate(a, 10)
    bm.commit(a, tokens, num_computed=10)  # blocks 0-3 and 4-7 are full; 8-9 is not
    hit = bm.match_prefix(tokens + [99])
    assert hit == a[:2]
    assert bm.blocks[a[0]].ref_count == 2
    assert bm.match_prefix(tokens[:8]) == a[:1]  # one token always stays uncached
    assert bm.match_prefix([1] + tokens[1:]) == []  # a different first block breaks the chain


def test_freed_cached_blocks_stay_reusable_until_recycled():
    bm = BlockManager(num_blocks=3, block_size=2)
    a: list[int] = []
    bm.allocate(a, 4)
    bm.commit(a, [1, 2, 3, 4], 4)
    bm.free_table(a)
    b = bm.match_prefix([1, 2, 3, 4, 5])
    assert len(b) == 2 and bm.num_free_blocks == 1
    bm.free_table(b)
    c: list[int] = []
    bm.allocate(c, 6)  # takes every block: the cached ones are recycled and forgotten
    assert bm.cached == {} and bm.match_prefix([1, 2, 3, 4, 5]) == []


def test_double_free_is_caught():
    bm = BlockManager(num_blocks=2, block_size=2)
    t: list[int] = []
    bm.allocate(t, 2)
    saved = list(t)
    bm.free_table(t)
    with pytest.raises(RuntimeError, match="freed twice"):
        bm.free_table(saved)


def test_hash_chain_depends_on_the_whole_prefix():
    assert chain_hash(None, (1, 2)) != chain_hash(chain_hash(None, (0, 0)), (1, 2))


class BlockManagerMachine(RuleBasedStateMachine):
    """Random interleavings of match/allocate/commit/free across several sequences."""

    def __init__(self):
        super().__init__()
        self.bm = BlockManager(num_blocks=12, block_size=2)
        self.seqs: dict[int, tuple[list[int], list[int], int]] = {}  # id -> (table, tokens, computed)
        self.next_id = 0

    @rule(tokens=st.lists(st.integers(0, 2), min_size=1, max_size=9))
    def add(self, tokens):
        table = self.bm.match_prefix(tokens)
        computed = len(table) * self.bm.block_size
        assert computed < len(tokens)
        self.seqs[self.next_id] = (table, list(tokens), computed)
        self.next_id += 1

    @precondition(lambda self: self.seqs)
    @rule(data=st.data(), extra=st.integers(0, 3))
    def compute(self, data, extra):
        sid = data.draw(st.sampled_from(sorted(self.seqs)))
        table, tokens, computed = self.seqs[sid]
        tokens.extend(data.draw(st.lists(st.integers(0, 2), min_size=extra, max_size=extra)))
        if not self.bm.can_allocate(self.bm.blocks_needed(table, len(tokens))):
            return
        self.bm.allocate(table, len(tokens))
        self.bm.commit(table, tokens, len(tokens))
        self.seqs[sid] = (table, tokens, len(tokens))

    @precondition(lambda self: self.seqs)
    @rule(data=st.data())
    def free(self, data):
        sid = data.draw(st.sampled_from(sorted(self.seqs)))
        table, _, _ = self.seqs.pop(sid)
        self.bm.free_table(table)

    @invariant()
    def reference_counts_match_the_tables(self):
        refs = Counter(b for table, _, _ in self.seqs.values() for b in table)
        for block in self.bm.blocks:
            assert block.ref_count == refs.get(block.block_id, 0)
            assert (block.ref_count == 0) == (block.block_id in self.bm.free)
        for table, _, _ in self.seqs.values():
            assert len(set(table)) == len(table)

    @invariant()
    def hashes_are_consistent(self):
        bs = self.bm.block_size
        for h, block_id in self.bm.cached.items():
            assert self.bm.blocks[block_id].hash == h
        for table, tokens, computed in self.seqs.values():
            prev = None
            for i, block_id in enumerate(table[: computed // bs]):
                block = self.bm.blocks[block_id]
                expected = chain_hash(prev, tuple(tokens[i * bs : (i + 1) * bs]))
                assert block.hash == expected
                prev = expected

    def teardown(self):
        for table, _, _ in self.seqs.values():
            self.bm.free_table(table)
        assert self.bm.num_free_blocks == self.bm.num_blocks, "leaked blocks"
        assert all(b.ref_count == 0 for b in self.bm.blocks)


BlockManagerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestBlockManagerProperties = BlockManagerMachine.TestCase
