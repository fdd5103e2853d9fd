"""Continuous batching: which sequences run this step and how many tokens each.

A step mixes running decodes with chunked prefills under a token budget. Running
sequences go first (FCFS); waiting ones are admitted while the admission cap and the
budget allow. When KV blocks run out, the newest running sequence is preempted
(its blocks are freed and it is recomputed later; nothing is lost).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shoal.engine.block_manager import BlockManager
from shoal.engine.outputs import RuntimeLimits
from shoal.engine.sequence import Sequence, Status


@dataclass(slots=True)
class ScheduledSeq:
    seq: Sequence
    num_new_tokens: int  # tokens to compute this step, starting at seq.num_computed_tokens
    samples: bool  # this step reaches the end of the sequence, so a token is sampled


@dataclass(slots=True)
class SchedulerOutput:
    scheduled: list[ScheduledSeq]  # one-token entries (decodes) first, as the model runner needs; each part FCFS
    num_preempted: int
    num_cached_tokens_queried: int
    num_cached_tokens_hit: int

    @property
    def num_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)


class Scheduler:
    def __init__(self, block_manager: BlockManager, limits: RuntimeLimits) -> None:
        self.block_manager = block_manager
        self.limits = limits  # replaced wholesale at run time; read once per step
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        limits = self.limits
        decodes: list[ScheduledSeq] = []
        others: list[ScheduledSeq] = []
        budget, num_preempted = self._schedule_running(limits.max_num_batched_tokens, decodes, others)
        bm = self.block_manager
        queried = hits = 0
        while self.waiting and budget > 0 and not num_preempted and len(self.running) < limits.max_num_seqs:
            seq = self.waiting[0]
            tokens = seq.all_token_ids
            if not seq.block_table:
                seq.block_table = bm.match_prefix(tokens)
                seq.num_computed_tokens = len(seq.block_table) * bm.block_size
            n = min(seq.num_uncomputed_tokens, budget)
            need = bm.blocks_needed(seq.block_table, seq.num_computed_tokens + n)
            if not bm.can_allocate(need):
                # Only running requests hold blocks: a waiting one keeping its prefix could starve the pool.
                bm.free_table(seq.block_table)
                seq.num_computed_tokens = 0
                break
            bm.allocate(seq.block_table, seq.num_computed_tokens + n)
            self.waiting.popleft()
            queried += len(tokens)  # counted once per admission, however many steps it waited
            hits += seq.num_computed_tokens
            seq.status = Status.RUNNING
            self.running.append(seq)
            entry = ScheduledSeq(seq, n, seq.num_computed_tokens + n == len(tokens))
            (decodes if n == 1 else others).append(entry)
            budget -= n
        return SchedulerOutput(decodes + others if others else decodes, num_preempted, queried, hits)

    def _schedule_running(self, budget: int, decodes: list[ScheduledSeq], others: list[ScheduledSeq]
                          ) -> tuple[int, int]:
        """Schedule running sequences FCFS, preempting the newest when blocks run out; (budget left, preempted).

        Every step of every decoding sequence passes here, so the common case (the new token fits the last
        block) costs no method call.
        """
        bm = self.block_manager
        block_size = bm.block_size
        running = self.running
        num_preempted = 0
        for seq in running:  # preemption pops only sequences after this one, which the loop then never reaches
            if budget <= 0:
                break
            computed = seq.num_computed_tokens
            total = len(seq.prompt_token_ids) + len(seq.output_token_ids)  # seq.num_tokens, without the call
            n = total - computed
            if n > budget:
                n = budget
            end = computed + n
            if end > len(seq.block_table) * block_size:
                need = bm.blocks_needed(seq.block_table, end)
                while not bm.can_allocate(need) and running[-1] is not seq:
                    self._preempt(running.pop())
                    num_preempted += 1
                if not bm.can_allocate(need):
                    running.pop()  # seq is the newest left: it yields to the older ones
                    self._preempt(seq)
                    num_preempted += 1
                    break
                bm.allocate(seq.block_table, end)
            (decodes if n == 1 else others).append(ScheduledSeq(seq, n, end == total))
            budget -= n
        return budget, num_preempted

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free_table(seq.block_table)
        seq.num_computed_tokens = 0
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Remove a sequence (finished or aborted) and free its blocks."""
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        if seq in self.running:
            self.running.remove(seq)
        else:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
        self.block_manager.free_table(seq.block_table)

    def retire(self, seq: Sequence) -> None:
        """Stop scheduling a sequence whose in-flight token is surely its last; finish() frees its blocks later."""
        self.running.remove(seq)

    def commit(self, seq: Sequence) -> None:
        """Publish this sequence's newly computed full blocks to the prefix cache."""
        self.block_manager.commit(seq.block_table, seq.all_token_ids, seq.num_computed_tokens)
