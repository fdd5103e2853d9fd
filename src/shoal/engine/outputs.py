"""What the engine hands back: per-request outputs and engine-wide statistics."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass
class RequestMetrics:
    """Timestamps from time.monotonic(); None until the event happened."""

    arrival_time: float
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    finished_time: float | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" | None
    metrics: RequestMetrics = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class RuntimeLimits:
    max_num_seqs: int
    max_num_batched_tokens: int


@dataclass(frozen=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_usage: float
    num_preemptions_total: int
    prefix_cache_queries_total: int
    prefix_cache_hits_total: int
    prompt_tokens_total: int
    generation_tokens_total: int
    last_step_time: float | None
    steps_total: int


@dataclass(frozen=True)
class StepStats:
    num_prompt_tokens: int
    num_generation_tokens: int
    num_running: int
    num_waiting: int
    step_seconds: float
    device_wait_seconds: float = 0.0  # of step_seconds, waiting for the device's sampled tokens (GPU-bound when high)


class StepDeltas:
    """What one or more steps added, per request, as parallel flat lists (cheap to pickle: see step_deltas).

    request_ids[i] got the tokens token_ids[sum(counts[:i]) : sum(counts[:i + 1])] and the text texts[i];
    `counts` is None when every request got exactly one token (a decode step: the common case). `finished` holds
    (request_id, finish_reason, (arrival, first_scheduled, first_token, finished) times) for each request that ended.
    """

    __slots__ = ("request_ids", "token_ids", "counts", "texts", "finished", "_uniform")

    def __init__(self) -> None:
        self.request_ids: list = []
        self.token_ids: list[int] = []
        self.counts: list[int] = []
        self.texts: list[str] = []
        self.finished: list[tuple] = []
        self._uniform = True  # every request so far got exactly one token

    def __bool__(self) -> bool:
        return bool(self.request_ids)

    def add(self, seq, upto: int) -> None:
        """What `LLMEngine._output` would add since the request's last output (`seq`: a Sequence)."""
        finished = seq.finish_reason is not None
        text = seq.detokenizer.visible_text(finished)
        new_ids = seq.output_token_ids[seq.num_sent_tokens : upto]
        self._append(seq.request_id, new_ids, text[seq.num_sent_chars :])
        seq.num_sent_tokens += len(new_ids)
        seq.num_sent_chars = len(text)
        if finished:
            m = seq.metrics
            self.finished.append((seq.request_id, seq.finish_reason,
                                  (m.arrival_time, m.first_scheduled_time, m.first_token_time, m.finished_time)))

    def add_output(self, out: RequestOutput) -> None:
        """A RequestOutput (e.g. LLMEngine.abort's) among the deltas."""
        self._append(out.request_id, out.new_token_ids, out.new_text)
        if out.finished:
            m = out.metrics
            self.finished.append((out.request_id, out.finish_reason,
                                  (m.arrival_time, m.first_scheduled_time, m.first_token_time, m.finished_time)))

    def _append(self, request_id, new_ids: list[int], new_text: str) -> None:
        self.request_ids.append(request_id)
        self.token_ids += new_ids
        self.counts.append(len(new_ids))
        self.texts.append(new_text)
        if len(new_ids) != 1:
            self._uniform = False

    def as_tuple(self) -> tuple[list, list[int], list[int] | None, list[str], list[tuple]]:
        """(request_ids, token_ids, counts or None, texts, finished): what a process boundary sends."""
        return self.request_ids, self.token_ids, None if self._uniform else self.counts, self.texts, self.finished


def split_deltas(request_ids: list, token_ids: list[int], counts: list[int] | None, texts: list[str]):
    """StepDeltas.as_tuple()'s lists back as (request_id, new_token_ids, new_text) per request."""
    if counts is None:
        return ((rid, [token], text) for rid, token, text in zip(request_ids, token_ids, texts))
    starts = itertools.accumulate(counts, initial=0)
    return ((rid, token_ids[a : a + n], text) for rid, a, n, text in zip(request_ids, starts, counts, texts))
