"""BlockTableMirror keeps each scheduled sequence's row equal to its block table, across every way a table changes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from shoal.engine.block_tables import BlockTableMirror


@dataclass(eq=False)
class Seq:
    block_table: list[int] = field(default_factory=list)


def check(mirror: BlockTableMirror, seqs: list[Seq]) -> None:
    rows, width = mirror.update(seqs)
    assert width == max(len(s.block_table) for s in seqs)
    assert len(set(rows.tolist())) == len(seqs)  # one row each
    got = mirror.table[rows, :width]
    for seq, row in zip(seqs, got):
        n = len(seq.block_table)
        assert row[:n].tolist() == seq.block_table and not row[n:].any()


def test_rows_follow_growth_resets_skips_and_new_lists():
    rng = random.Random(0)
    mirror = BlockTableMirror(max_blocks=4, rows=2)  # both grow during the run
    seqs = [Seq([rng.randrange(1000)]) for _ in range(12)]
    for _ in range(400):
        step = []
        for seq in rng.sample(seqs, rng.randint(1, len(seqs))):
            r = rng.random()
            if r < 0.05:  # preempted and re-admitted with a fresh table (a new list object)
                seq.block_table = [rng.randrange(1000) for _ in range(rng.randint(1, 3))]
            elif r < 0.08:  # the same list freed and refilled, maybe longer than before: it sits out a step
                seq.block_table[:] = [rng.randrange(1000) for _ in range(rng.randint(1, 9))]
                continue
            elif r < 0.4:
                seq.block_table.extend(rng.randrange(1000) for _ in range(rng.randint(1, 2)))
            step.append(seq)
        if step:
            check(mirror, step)
    assert mirror.table.shape[0] >= 12 and mirror.table.shape[1] >= 9


def test_a_row_freed_by_a_sequence_is_clean_for_the_next():
    mirror = BlockTableMirror(max_blocks=8, rows=1)
    a, b = Seq([7, 8, 9]), Seq([4])
    check(mirror, [a])
    check(mirror, [b])  # takes a's row
    assert mirror.table[:, 1:].sum() == 0
    assert np.array_equal(mirror.update([a, b])[0], mirror.update([a, b])[0])  # stable rows while both run
