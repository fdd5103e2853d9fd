"""The synchronous engine core: add requests, step, abort. LLM and AsyncLLM both drive this."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.engine.block_manager import BlockManager
from shoal.engine.config import EngineConfig, ModelConfig
from shoal.engine.detokenizer import IncrementalDetokenizer
from shoal.engine.model_runner import ModelRunner, PendingTokens
from shoal.engine.outputs import EngineStats, RequestMetrics, RequestOutput, RuntimeLimits, StepDeltas, StepStats
from shoal.engine.sampler import make_generator
from shoal.engine.sampling_params import SamplingParams
from shoal.engine.scheduler import ScheduledSeq, Scheduler
from shoal.engine.sequence import Sequence, Status
from shoal.engine.tokenizer import Tokenizer

PENDING = -1  # an output token sampled on the device and not yet read back


@dataclass
class _Launched:
    """A step on the device: where each sampled token goes, and which sequences filled a KV block."""

    sampled: list[tuple[Sequence, int]]  # (sequence, index in its output_token_ids), in sampled-row order
    commits: list[Sequence]  # to publish to the prefix cache once the tokens are known
    tokens: PendingTokens
    num_prompt: int


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        model_dir = Path(config.model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model_dir {model_dir} is not a directory")
        self.model_config = ModelConfig.from_dir(model_dir)
        has_tokenizer = (model_dir / "tokenizer.json").is_file()
        self.tokenizer = Tokenizer(model_dir, self.model_config.eos_token_ids) if has_tokenizer else None
        if self.tokenizer is not None:
            self.tokenizer.whole_token_texts  # the detokenizer's tables, built and checked now (~0.15 s), not in a step
        eos = self.model_config.eos_token_ids + (self.tokenizer.eos_token_ids if self.tokenizer else ())
        self.eos_token_ids = frozenset(eos)
        self.runner = ModelRunner(config, self.model_config)
        self.max_model_len = self.runner.max_model_len
        self.block_manager = BlockManager(self.runner.num_blocks, config.block_size, config.enable_prefix_caching)
        self.capacity = RuntimeLimits(config.max_num_seqs, config.max_num_batched_tokens)
        self.scheduler = Scheduler(self.block_manager, self.capacity)
        self.requests: dict[str, Sequence] = {}
        self._arrivals = itertools.count()
        self.num_preemptions_total = 0
        self.prefix_cache_queries_total = 0
        self.prefix_cache_hits_total = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.last_step_time: float | None = None
        self.last_step_stats = StepStats(0, 0, 0, 0, 0.0)
        self.steps_total = 0
        self.device_wait_seconds_total = 0.0  # host time spent waiting for sampled tokens (diagnostics)
        self._in_flight: _Launched | None = None  # asynchronous scheduling: the step not yet read back
        if self.runner.device.type == "cuda":
            self.warm_up()

    # -- requests ------------------------------------------------------------------
    def encode_prompt(self, prompt: str | list[int]) -> list[int]:
        """Validate a prompt and return its token ids; ValueError names `prompt`."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("prompt: this model folder has no tokenizer.json; pass token ids instead of text")
            ids = self.tokenizer.encode(prompt)
        elif isinstance(prompt, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            ids = list(prompt)
            vocab = self.model_config.vocab_size
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise ValueError(f"prompt: token id {bad} is outside the vocabulary [0, {vocab})")
        else:
            raise ValueError(f"prompt must be a string or a list of token ids, got {type(prompt).__name__}")
        if not ids:
            raise ValueError("prompt must not be empty")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"prompt is {len(ids)} tokens, longer than the context allows (max_model_len={self.max_model_len}, "
                "and at least one token must be generated); shorten the prompt"
            )
        return ids

    def check_params(self, params: SamplingParams) -> None:
        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
        if params.stop and self.tokenizer is None:
            raise ValueError("stop: stop strings need a tokenizer, and this model folder has no tokenizer.json")

    def add_request(
        self, request_id: str, prompt: str | list[int], params: SamplingParams, arrival_time: float | None = None
    ) -> None:
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use")
        self.check_params(params)
        ids = self.encode_prompt(prompt)
        seq = Sequence(
            request_id=request_id,
            prompt_token_ids=ids,
            params=params,
            metrics=RequestMetrics(arrival_time=arrival_time if arrival_time is not None else time.monotonic()),
            arrival_index=next(self._arrivals),
            max_output_tokens=min(params.max_tokens, self.max_model_len - len(ids)),
            stop_ids=frozenset(params.stop_token_ids).union(() if params.ignore_eos else self.eos_token_ids),
            detokenizer=IncrementalDetokenizer(self.tokenizer, ids, params.stop),
            generator=make_generator(params.seed, self.runner.device),
        )
        self.requests[request_id] = seq
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> RequestOutput | None:
        seq = self.requests.pop(request_id, None)
        if seq is None:
            return None
        self.scheduler.finish(seq, "abort")
        while seq.output_token_ids and seq.output_token_ids[-1] == PENDING:
            seq.output_token_ids.pop()  # in flight when aborted: never delivered
        seq.metrics.finished_time = time.monotonic()
        return self._output(seq)

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    # -- the step --------------------------------------------------------------------
    def step(self, stream: bool = True) -> list[RequestOutput]:
        """Schedule, run the model once, sample, and return an output for every request that got tokens.

        With stream=False only finished requests get an output (offline generation needs no deltas).
        With asynchronous scheduling the step launched here is read back by the next call, so the host
        prepares step N+1 while the device runs step N; outputs arrive one step later.
        """
        return self._step(stream, self._output)

    def step_deltas(self, deltas: StepDeltas | None = None) -> StepDeltas:
        """step() for a process boundary: what is new for each request that got tokens, as the flat lists of
        `StepDeltas` (into `deltas` when given), not a RequestOutput per request.

        Building a RequestOutput (a copy of every token so far, a dataclass) per token, and pickling a tuple with a
        request id string per request, cost several us a request per step on the host, which a small model's GPU
        step cannot hide.
        """
        deltas = StepDeltas() if deltas is None else deltas
        self._step(True, deltas.add)
        return deltas

    def _step(self, stream: bool, emit: Callable[[Sequence, int], object]) -> list:
        t0 = time.monotonic()
        launched = self._launch(t0) if self.scheduler.has_work else None
        if self.config.overlaps_steps:
            done, self._in_flight = self._in_flight, launched
        else:
            done = launched
        outputs, num_generated, waited = self._resolve(done, stream, emit) if done is not None else ([], 0, 0.0)
        if launched is not None or done is not None:
            now = time.monotonic()
            self.last_step_time = now
            self.last_step_stats = StepStats(
                num_prompt_tokens=launched.num_prompt if launched is not None else 0,  # computed in this step
                num_generation_tokens=num_generated,  # read back in this step
                num_running=len(self.scheduler.running),
                num_waiting=len(self.scheduler.waiting),
                step_seconds=now - t0,
                device_wait_seconds=waited,
            )
        return outputs

    def _launch(self, t0: float) -> _Launched | None:
        plan = self.scheduler.schedule()
        if not plan.scheduled and not self.scheduler.running and self._in_flight is None:
            raise RuntimeError("the scheduler admitted nothing with nothing running: the KV pool is too small")
        self.num_preemptions_total += plan.num_preempted
        self.prefix_cache_queries_total += plan.num_cached_tokens_queried
        self.prefix_cache_hits_total += plan.num_cached_tokens_hit
        if not plan.scheduled:
            return None
        batch = plan.scheduled  # decodes first, as the runner needs
        generators = [e.seq.generator for e in batch if e.samples]
        tokens = self.runner.launch(batch, generators, self._in_flight.tokens if self._in_flight else None)
        launched = self._advance(batch, tokens, t0)
        self.prompt_tokens_total += launched.num_prompt
        self.steps_total += 1
        return launched

    def _advance(self, batch: list[ScheduledSeq], tokens: PendingTokens, t0: float) -> _Launched:
        """Move every launched sequence past the tokens it computes; a placeholder per sampled token."""
        retire = self.config.overlaps_steps
        bs = self.block_manager.block_size
        step = tokens.step
        sampled: list[tuple[Sequence, int]] = []
        commits: list[Sequence] = []
        num_prompt = 0
        for entry in batch:
            seq, n = entry.seq, entry.num_new_tokens
            before = seq.num_computed_tokens
            after = seq.num_computed_tokens = before + n
            if n > 1 or before < len(seq.prompt_token_ids):
                num_prompt += n
                if seq.metrics.first_scheduled_time is None:  # a first step always computes prompt tokens
                    seq.metrics.first_scheduled_time = t0
            if after // bs > before // bs:
                commits.append(seq)
            if entry.samples:
                out = seq.output_token_ids
                seq.pending_step, seq.pending_row = step, len(sampled)
                sampled.append((seq, len(out)))
                out.append(PENDING)
                if retire and len(out) >= seq.max_output_tokens:
                    self.scheduler.retire(seq)  # its in-flight token is surely its last: schedule it no more
        return _Launched(sampled, commits, tokens, num_prompt)

    def _resolve(self, done: _Launched, stream: bool, emit: Callable[[Sequence, int], object]
                 ) -> tuple[list, int, float]:
        """(outputs, tokens read back, seconds the host waited for them)."""
        wait_from = time.monotonic()
        tokens = done.tokens.tolist()
        now = time.monotonic()
        self.device_wait_seconds_total += now - wait_from
        step = done.tokens.step
        live = []
        for (seq, idx), token in zip(done.sampled, tokens):  # first every token, so that the commits hash real ids
            if seq.status is not Status.FINISHED:
                seq.output_token_ids[idx] = token
                if seq.pending_step == step:
                    seq.pending_step = 0
                live.append((seq, idx, token))
        for seq in done.commits:
            if seq.status is not Status.FINISHED:
                self.scheduler.commit(seq)
        outputs = []
        for seq, idx, token in live:
            if self._check_finish(seq, idx, token, now) or stream:
                outputs.append(emit(seq, idx + 1))
        self.generation_tokens_total += len(live)
        return outputs, len(live), now - wait_from

    def _check_finish(self, seq: Sequence, idx: int, token: int, now: float) -> bool:
        """Account for output token `idx` of `seq` (now on the host); returns whether the request finished."""
        metrics = seq.metrics
        if metrics.first_token_time is None:
            metrics.first_token_time = now
        if token in seq.stop_ids or seq.detokenizer.add([token]) is not None:
            reason = "stop"
        elif idx + 1 >= seq.max_output_tokens:
            reason = "length"
        else:
            return False
        del seq.output_token_ids[idx + 1 :]  # a later launch's placeholder: its row is dropped when it resolves
        self.scheduler.finish(seq, reason)
        self.requests.pop(seq.request_id, None)
        metrics.finished_time = now
        return True

    def _output(self, seq: Sequence, upto: int | None = None) -> RequestOutput:
        """The request's state through output token `upto` (default: all of them)."""
        finished = seq.finish_reason is not None
        text = seq.detokenizer.visible_text(finished)
        token_ids = seq.output_token_ids[:upto]
        out = RequestOutput(
            request_id=seq.request_id,
            prompt_token_ids=seq.prompt_token_ids,
            token_ids=token_ids,
            text=text,
            new_token_ids=token_ids[seq.num_sent_tokens :],
            new_text=text[seq.num_sent_chars :],
            finished=finished,
            finish_reason=seq.finish_reason,
            metrics=seq.metrics,
        )
        seq.num_sent_tokens = len(token_ids)
        seq.num_sent_chars = len(text)
        return out

    # -- start-up ------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Run the batch shapes of `warm_up_batches` once and leave no trace (requests, totals) behind.

        Steps with prompts run the model eagerly, and Triton compiles a kernel variant the first time a shape class
        comes (a count of sequences past a search bucket, a token count that is not a multiple of 16, decodes
        beside prompts): 0.5-1.7 s each on an H100 host (bench/RESULTS.md), a stall of every running stream when
        it happens while serving. Done at start-up on CUDA, as the decode graphs are captured then.
        """
        params = SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True)
        decoding = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)  # still running when prompts join
        vocab = self.model_config.vocab_size
        for b, (num_decodes, prompt_lens) in enumerate(warm_up_batches(self.capacity, self.max_model_len)):
            for i in range(num_decodes):
                self.add_request(f"__warm-up-{b}-d{i}", [(b * 1009 + 7 * i + 1) % vocab] * 3, decoding)
            for _ in range(3 if num_decodes else 0):  # prefilled, then decoding (asynchronous: one step behind)
                self.step(stream=False)
            for i, n in enumerate(prompt_lens):  # distinct ids: no prefix-cache hit shortens them
                self.add_request(f"__warm-up-{b}-p{i}", [(b * 1009 + 31 * i + j) % vocab for j in range(n)], params)
            self.step(stream=False)
            for rid in list(self.requests):
                self.abort(rid)
            while self._in_flight is not None or self.has_unfinished():
                self.step(stream=False)
        self.num_preemptions_total = self.prefix_cache_queries_total = self.prefix_cache_hits_total = 0
        self.prompt_tokens_total = self.generation_tokens_total = self.steps_total = 0
        self.device_wait_seconds_total = 0.0
        self.last_step_time, self.last_step_stats = None, StepStats(0, 0, 0, 0, 0.0)

    # -- limits and statistics ---------------------------------------------------------
    @property
    def runtime_limits(self) -> RuntimeLimits:
        return self.scheduler.limits

    def set_runtime_limits(
        self, max_num_seqs: int | None = None, max_num_batched_tokens: int | None = None
    ) -> RuntimeLimits:
        current = self.scheduler.limits
        seqs = current.max_num_seqs if max_num_seqs is None else max_num_seqs
        budget = current.max_num_batched_tokens if max_num_batched_tokens is None else max_num_batched_tokens
        cap = self.capacity
        if not _is_int(seqs) or not 1 <= seqs <= cap.max_num_seqs:
            raise ValueError(f"max_num_seqs must be an integer in [1, {cap.max_num_seqs}] (startup capacity), got {seqs!r}")
        low = self.config.block_size
        if not _is_int(budget) or not low <= budget <= cap.max_num_batched_tokens:
            raise ValueError(
                f"max_num_batched_tokens must be an integer in [{low}, {cap.max_num_batched_tokens}] "
                f"(block_size to startup capacity), got {budget!r}"
            )
        self.scheduler.limits = RuntimeLimits(seqs, budget)  # read once at the start of the next step
        return self.scheduler.limits

    def stats(self) -> EngineStats:
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_usage=self.block_manager.usage,
            num_preemptions_total=self.num_preemptions_total,
            prefix_cache_queries_total=self.prefix_cache_queries_total,
            prefix_cache_hits_total=self.prefix_cache_hits_total,
            prompt_tokens_total=self.prompt_tokens_total,
            generation_tokens_total=self.generation_tokens_total,
            last_step_time=self.last_step_time,
            steps_total=self.steps_total,
        )


def warm_up_batches(capacity: RuntimeLimits, max_model_len: int) -> list[tuple[int, list[int]]]:
    """(decodes running, prompt lengths joining) of the steps `LLMEngine.warm_up` runs, within the engine's limits:
    one and several prompts (the prefill kernel's sequence-search buckets: up to 15, 255, more), token counts that
    are and are not multiples of 16, one-token prompts, and prompts joining running decodes."""
    seqs, budget = capacity.max_num_seqs, capacity.max_num_batched_tokens
    long = max(1, min(128, max_model_len - 9, budget // 2))
    batches = [(0, [long]), (0, [long + 1]), (0, [1]), (0, [16] * min(seqs, 16)), (0, [17] * min(seqs, 17)),
               (1, [long]), (1, [1]), (min(seqs - 1, 3), [5, 17])]
    if seqs >= 256:
        batches.append((0, [1] * 256))
    return [(d, [n for n in lens if n <= budget][: max(1, seqs - d)]) for d, lens in batches if d < seqs]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
