"""The block tables of the sequences in the last step, kept on the host as rows of one numpy array.

Rebuilding every table from its Python list each step costs the host about a microsecond per sequence
per step at 1k context. A running sequence's table only grows, so a row here is written once per new
block. A row is rewritten whole when its sequence missed the previous step or holds another list object
than last time (a preempted sequence is re-admitted with a fresh table) or a shorter one.
"""

from __future__ import annotations

import numpy as np


class BlockTableMirror:
    def __init__(self, max_blocks: int, rows: int = 64) -> None:
        self.table = np.zeros((rows, max(1, max_blocks)), np.int32)  # unused entries stay 0
        self._free = list(range(rows - 1, -1, -1))
        self._entries: dict = {}  # sequence -> [row, its block_table list, blocks written]

    def update(self, seqs: list) -> tuple[np.ndarray, int]:
        """(the row of each sequence's table, in order; the longest table's length), the rows up to date."""
        old, new, free, table = self._entries, {}, self._free, self.table
        rows = []
        width = 0
        for seq in seqs:
            blocks = seq.block_table
            n = len(blocks)
            entry = old.pop(seq, None)
            if entry is None:
                if not free:
                    self._grow_rows()
                    table = self.table
                entry = [free.pop(), blocks, 0]
            elif entry[1] is not blocks or n < entry[2]:
                table[entry[0], : entry[2]] = 0
                entry[1], entry[2] = blocks, 0
            if n != entry[2]:
                if n > table.shape[1]:
                    self._grow_columns(n)
                    table = self.table
                table[entry[0], entry[2] : n] = blocks[entry[2] :]
                entry[2] = n
            new[seq] = entry
            rows.append(entry[0])
            if n > width:
                width = n
        for row, _, written in old.values():  # not in this step: the row goes back, zeroed
            table[row, :written] = 0
            free.append(row)
        self._entries = new
        return np.array(rows, np.intp), width

    def _grow_rows(self) -> None:
        rows, cols = self.table.shape
        self.table = np.concatenate([self.table, np.zeros((rows, cols), np.int32)])
        self._free.extend(range(2 * rows - 1, rows - 1, -1))

    def _grow_columns(self, need: int) -> None:
        rows, cols = self.table.shape
        self.table = np.concatenate([self.table, np.zeros((rows, max(need, 2 * cols) - cols), np.int32)], axis=1)
