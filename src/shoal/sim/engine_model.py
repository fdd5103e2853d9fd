"""One simulated replica: continuous batching with chunked prefill, as Shoal's (and vLLM v1's) scheduler does it.

Each step decodes one token for every running sequence first, then spends what is left of the token budget on
prefill chunks (running partial prefills first, then new admissions while the admission cap allows and the KV
cache has room). Per-sequence work per step is O(1) amortised: a decoding sequence is only touched when it
finishes, because its finish step is known when it starts decoding.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from shoal.sim.calibration import EngineCalibration


@dataclass(eq=False)
class SimRequest:
    arrival: float
    prompt_tokens: int
    output_tokens: int
    prefilled: int = 0
    first_token_time: float | None = None
    finish_time: float | None = None
    decode_start_step: int = 0
    preempted: bool = False


@dataclass
class StepResult:
    duration: float
    decode_seqs: int  # each produced one token after `duration` (one ITL sample each)
    first_tokens: list[SimRequest] = field(default_factory=list)
    finished: list[SimRequest] = field(default_factory=list)


class SimEngine:
    def __init__(self, cal: EngineCalibration, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.cal = cal
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[SimRequest] = deque()
        self.prefilling: list[SimRequest] = []
        self._decoding: list[tuple[int, int, SimRequest]] = []  # (finish step, tie, request)
        self._tie = 0
        self.num_decoding = 0
        self._dec_prompt_sum = 0  # sum of prompt lengths of decoding sequences
        self._dec_start_sum = 0  # sum of decode_start_step of decoding sequences
        self.step_index = 0
        self._pending: tuple | None = None
        self.preemptions = 0

    # --- load view -----------------------------------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return self.num_decoding + len(self.prefilling)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def decode_context(self, step: int | None = None) -> int:
        step = self.step_index if step is None else step
        # a sequence that entered decoding at step s holds prompt + (step - s + 1) tokens at `step`
        return self._dec_prompt_sum + self.num_decoding * (step + 1) - self._dec_start_sum

    def kv_tokens(self) -> int:
        return self.decode_context() + sum(r.prefilled for r in self.prefilling)

    def kv_usage(self) -> float:
        return min(1.0, self.kv_tokens() / self.cal.kv_capacity_tokens)

    @property
    def idle(self) -> bool:
        return not (self.waiting or self.prefilling or self.num_decoding)

    def add(self, req: SimRequest) -> None:
        self.waiting.append(req)

    # --- one step --------------------------------------------------------------------------------------------------
    def begin_step(self) -> float | None:
        """Plan the next step; returns its duration, or None when there is nothing to run."""
        if self.idle:
            return None
        budget = max(self.max_num_batched_tokens - self.num_decoding, 0)
        kv_free = self.cal.kv_capacity_tokens - self.kv_tokens() - self.num_decoding
        while kv_free < 0 and self.num_decoding:
            kv_free += self._preempt_newest()
        chunks: list[tuple[SimRequest, int]] = []
        prefill_tokens = 0
        ctx_sum = 0.0
        for req in self.prefilling:
            if budget <= 0:
                break
            n = min(req.prompt_tokens - req.prefilled, budget)
            chunks.append((req, n))
            budget -= n
            prefill_tokens += n
            ctx_sum += n * (req.prefilled + n / 2)
        while self.waiting and budget > 0 and self.num_running < self.max_num_seqs:
            req = self.waiting[0]
            if req.prompt_tokens + req.output_tokens > kv_free and self.num_running > 0:
                break  # no room to hold it to completion; FCFS keeps the queue order
            self.waiting.popleft()
            self.prefilling.append(req)
            kv_free -= req.prompt_tokens + req.output_tokens
            n = min(req.prompt_tokens, budget)
            chunks.append((req, n))
            budget -= n
            prefill_tokens += n
            ctx_sum += n * n / 2
        dec = self.num_decoding
        duration = self.cal.step_seconds(prefill_tokens, ctx_sum, dec, self.decode_context(), len(chunks))
        self._pending = (chunks, dec)
        return duration

    def end_step(self, now: float, duration: float) -> StepResult:
        chunks, dec = self._pending
        self._pending = None
        result = StepResult(duration=duration, decode_seqs=dec)
        step = self.step_index
        # decoding sequences whose last token was produced in this step leave
        while self._decoding and self._decoding[0][0] <= step:
            _, _, req = heapq.heappop(self._decoding)
            if req.preempted:
                continue
            self._remove_decoding(req)
            req.finish_time = now
            result.finished.append(req)
        self.step_index = step + 1
        for req, n in chunks:
            req.prefilled += n
            if req.prefilled >= req.prompt_tokens:
                self.prefilling.remove(req)
                if req.first_token_time is None:  # a preempted request's first token was already counted
                    req.first_token_time = now
                    result.first_tokens.append(req)
                if req.output_tokens <= 1:
                    req.finish_time = now
                    result.finished.append(req)
                else:
                    self._start_decoding(req)
        return result

    # --- bookkeeping ------------------------------------------------------------------------------------------------
    def _start_decoding(self, req: SimRequest) -> None:
        req.decode_start_step = self.step_index
        # it needs output_tokens - 1 more decode steps: steps s .. s + output_tokens - 2
        self._tie += 1
        heapq.heappush(self._decoding, (self.step_index + req.output_tokens - 2, self._tie, req))
        self.num_decoding += 1
        self._dec_prompt_sum += req.prompt_tokens
        self._dec_start_sum += req.decode_start_step

    def _remove_decoding(self, req: SimRequest) -> None:
        self.num_decoding -= 1
        self._dec_prompt_sum -= req.prompt_tokens
        self._dec_start_sum -= req.decode_start_step

    def _preempt_newest(self) -> int:
        """Recompute-preemption of the most recently started sequence (rare: the KV cache overflowed)."""
        live = [e for e in self._decoding if not e[2].preempted]
        victim = max(live, key=lambda e: e[2].decode_start_step)[2]
        freed = victim.prompt_tokens + self.step_index - victim.decode_start_step + 1
        self._remove_decoding(victim)
        victim.preempted = True
        self.preemptions += 1
        clone = SimRequest(victim.arrival, victim.prompt_tokens, victim.output_tokens)
        clone.first_token_time = victim.first_token_time
        self.waiting.appendleft(clone)
        return freed
