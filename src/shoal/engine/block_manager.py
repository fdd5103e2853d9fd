"""Paged KV-cache bookkeeping: fixed-size blocks, reference counts, prefix caching.

Plain Python (no torch) so it is tested on its own. A block table is a list of
block ids owned by one sequence. A full block whose tokens have been computed gets
a hash chained from the previous block's hash, so equal hashes mean equal prefixes;
freed blocks keep their hash and stay reusable until they are recycled (LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()


def chain_hash(prev_hash: int | None, token_ids: tuple[int, ...]) -> int:
    return hash((prev_hash, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Free blocks in recycling order (least recently freed first); cached ones are reusable until recycled.
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[int, int] = {}  # chained hash -> block id

    # -- queries ---------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        return 1.0 - len(self.free) / self.num_blocks

    def blocks_needed(self, block_table: list[int], num_tokens: int) -> int:
        """How many new blocks `block_table` needs to hold `num_tokens` tokens."""
        return max(0, -(-num_tokens // self.block_size) - len(block_table))

    def can_allocate(self, num_blocks: int) -> bool:
        return num_blocks <= len(self.free)

    # -- prefix cache ------------------------------------------------------------
    def match_prefix(self, token_ids: list[int]) -> list[int]:
        """Take references on the cached full blocks that start `token_ids`; return their ids.

        At least one token is always left uncached so the model has something to compute.
        """
        if not self.enable_prefix_caching:
            return []
        matched: list[int] = []
        prev: int | None = None
        bs = self.block_size
        for i in range((len(token_ids) - 1) // bs):
            chunk = tuple(token_ids[i * bs : (i + 1) * bs])
            h = chain_hash(prev, chunk)
            block_id = self.cached.get(h)
            if block_id is None or self.blocks[block_id].token_ids != chunk:
                break
            matched.append(block_id)
            prev = h
        for block_id in matched:
            self._ref(block_id)
        return matched

    def commit(self, block_table: list[int], token_ids: list[int], num_computed: int) -> None:
        """Hash and publish the full blocks of `block_table` whose tokens are computed."""
        if not self.enable_prefix_caching:
            return
        num_full = min(num_computed // self.block_size, len(block_table))
        start = num_full
        while start > 0 and self.blocks[block_table[start - 1]].hash is None:
            start -= 1  # hashes form a chain, so everything before a hashed block is hashed
        bs = self.block_size
        for i in range(start, num_full):
            block = self.blocks[block_table[i]]
            prev = self.blocks[block_table[i - 1]].hash if i > 0 else None
            block.token_ids = tuple(token_ids[i * bs : (i + 1) * bs])
            block.hash = chain_hash(prev, block.token_ids)
            self.cached.setdefault(block.hash, block.block_id)

    # -- allocation ----------------------------------------------------------------
    def allocate(self, block_table: list[int], num_tokens: int) -> None:
        """Grow `block_table` in place so it holds `num_tokens` tokens."""
        needed = self.blocks_needed(block_table, num_tokens)
        if needed > len(self.free):
            raise RuntimeError(f"out of KV blocks: need {needed}, have {len(self.free)} free")
        for _ in range(needed):
            block_id, _ = self.free.popitem(last=False)
            self._forget(block_id)
            self.blocks[block_id].ref_count = 1
            block_table.append(block_id)

    def free_table(self, block_table: list[int]) -> None:
        """Drop this table's references; blocks nobody uses go back to the free list (last ones first out)."""
        for block_id in reversed(block_table):
            block = self.blocks[block_id]
            if block.ref_count <= 0:
                raise RuntimeError(f"block {block_id} freed twice")
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        block_table.clear()

    def _ref(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]
        block.ref_count += 1

    def _forget(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.hash is not None and self.cached.get(block.hash) == block_id:
            del self.cached[block.hash]
        block.hash = None
        block.token_ids = ()
