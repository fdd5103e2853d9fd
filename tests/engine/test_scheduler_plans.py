"""Scheduler.schedule against the plain one-call-per-step version it replaced, on random workloads.

The running loop skips BlockManager calls when a sequence's new tokens fit its last block and builds the
decodes-first order itself; plans and every piece of state it leaves must equal the plain version's.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.engine.block_manager import BlockManager
from shoal.engine.outputs import RequestMetrics, RuntimeLimits
from shoal.engine.sampling_params import SamplingParams
from shoal.engine.scheduler import ScheduledSeq, Scheduler, SchedulerOutput
from shoal.engine.sequence import Sequence, Status


def plain_schedule(sched: Scheduler) -> SchedulerOutput:
    """The reference: one blocks_needed() per sequence, samples from the sequence, then a stable sort."""
    limits, bm = sched.limits, sched.block_manager
    budget = limits.max_num_batched_tokens
    scheduled: list[ScheduledSeq] = []
    num_preempted = queried = hits = 0

    def entry(seq: Sequence, n: int) -> ScheduledSeq:
        return ScheduledSeq(seq, n, seq.num_computed_tokens + n == seq.num_tokens)

    i = 0
    while i < len(sched.running) and budget > 0:
        seq = sched.running[i]
        n = min(seq.num_uncomputed_tokens, budget)
        need = bm.blocks_needed(seq.block_table, seq.num_computed_tokens + n)
        if need:
            while not bm.can_allocate(need) and sched.running[-1] is not seq:
                sched._preempt(sched.running.pop())
                num_preempted += 1
            if not bm.can_allocate(need):
                sched.running.pop()
                sched._preempt(seq)
                num_preempted += 1
                break
            bm.allocate(seq.block_table, seq.num_computed_tokens + n)
        scheduled.append(entry(seq, n))
        budget -= n
        i += 1
    while sched.waiting and budget > 0 and not num_preempted and len(sched.running) < limits.max_num_seqs:
        seq = sched.waiting[0]
        tokens = seq.all_token_ids
        if not seq.block_table:
            seq.block_table = bm.match_prefix(tokens)
            seq.num_computed_tokens = len(seq.block_table) * bm.block_size
        n = min(seq.num_uncomputed_tokens, budget)
        need = bm.blocks_needed(seq.block_table, seq.num_computed_tokens + n)
        if not bm.can_allocate(need):
            bm.free_table(seq.block_table)
            seq.num_computed_tokens = 0
            break
        bm.allocate(seq.block_table, seq.num_computed_tokens + n)
        sched.waiting.popleft()
        queried += len(tokens)
        hits += seq.num_computed_tokens
        seq.status = Status.RUNNING
        sched.running.append(seq)
        scheduled.append(entry(seq, n))
        budget -= n
    scheduled.sort(key=lambda e: e.num_new_tokens != 1)  # decodes first, as the engine sorted them
    return SchedulerOutput(scheduled, num_preempted, queried, hits)


def snapshot(sched: Scheduler) -> tuple:
    bm = sched.block_manager
    seqs = list(sched.running) + list(sched.waiting)
    return (
        [s.request_id for s in sched.running],
        [s.request_id for s in sched.waiting],
        [(s.request_id, list(s.block_table), s.num_computed_tokens, s.status) for s in seqs],
        list(bm.free),
        dict(bm.cached),
        [(b.ref_count, b.hash) for b in bm.blocks],
    )


def plan_of(out: SchedulerOutput) -> tuple:
    entries = [(e.seq.request_id, e.num_new_tokens, e.samples) for e in out.scheduled]
    return entries, out.num_preempted, out.num_cached_tokens_queried, out.num_cached_tokens_hit


@settings(max_examples=60, deadline=None)
@given(rng=st.randoms(use_true_random=False), block_size=st.sampled_from([1, 2, 4, 8]),
       num_blocks=st.integers(4, 40))
def test_plans_and_state_equal_the_plain_scheduler(rng, block_size, num_blocks):
    # Two identical worlds driven by the same operations: one schedules with Scheduler.schedule, one with the plain one.
    worlds = [(Scheduler(BlockManager(num_blocks, block_size), RuntimeLimits(8, 32)), {}) for _ in range(2)]
    shared = [rng.randrange(3, 50) for _ in range(rng.randint(0, 12))]
    max_len = num_blocks * block_size  # a sequence never outgrows the pool on its own
    for op in range(rng.randint(1, 120)):
        kind = rng.random()
        if kind < 0.15:
            prompt = (shared[: rng.randint(0, len(shared))] + [rng.randrange(3, 50) for _ in range(rng.randint(1, 20))])
            prompt = prompt[: max(1, max_len - 8)]
            for sched, seqs in worlds:
                seq = Sequence(f"r{op}", list(prompt), SamplingParams(), RequestMetrics(0.0), arrival_index=op)
                seqs[seq.request_id] = seq
                sched.add(seq)
        elif kind < 0.2:
            limits = RuntimeLimits(rng.randint(1, 8), rng.randint(1, 32))
            for sched, _ in worlds:
                sched.limits = limits
        elif kind < 0.25 and worlds[0][1]:
            rid = rng.choice(sorted(worlds[0][1]))
            for sched, seqs in worlds:
                sched.finish(seqs.pop(rid), "abort")
        elif kind < 0.28 and worlds[0][0].running:
            at = rng.randrange(len(worlds[0][0].running))
            for sched, _ in worlds:
                sched.retire(sched.running[at])  # as asynchronous scheduling does; it holds its blocks till finished
        else:
            plan = plan_of(worlds[0][0].schedule())
            assert plan == plan_of(plain_schedule(worlds[1][0]))
            tokens = [rng.randrange(3, 50) for _ in plan[0]]
            for sched, seqs in worlds:
                advance(sched, seqs, plan[0], tokens, max_len)
        assert snapshot(worlds[0][0]) == snapshot(worlds[1][0])


def advance(sched: Scheduler, seqs: dict[str, Sequence], plan: list, tokens: list[int], max_len: int) -> None:
    """What the engine does once a planned step ran: computed counts, sampled tokens, commits, finishes."""
    for (rid, n, samples), token in zip(plan, tokens):
        seq = seqs[rid]
        seq.num_computed_tokens += n
        if samples:
            seq.output_token_ids.append(token)
        sched.commit(seq)
        if samples and (seq.num_tokens >= max_len or token % 7 == 0):
            sched.finish(seqs.pop(rid), "length")
