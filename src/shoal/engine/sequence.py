"""One request's state inside the engine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from shoal.engine.outputs import RequestMetrics
from shoal.engine.sampling_params import SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    metrics: RequestMetrics
    arrival_index: int = 0  # FCFS order, also decides who is newest when preempting
    status: Status = Status.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0  # tokens whose K/V sit in the cache
    # Set by the engine at admission, so the per-token checks are one lookup each:
    max_output_tokens: int = 0  # params.max_tokens, or fewer where the context ends first
    stop_ids: frozenset[int] = frozenset()  # params.stop_token_ids, and the EOS ids unless params.ignore_eos
    finish_reason: str | None = None
    detokenizer: Any = None  # IncrementalDetokenizer
    generator: Any = None  # torch.Generator for a seeded request
    num_sent_tokens: int = 0  # what earlier RequestOutputs already delivered
    num_sent_chars: int = 0
    # Asynchronous scheduling: the last output token is still on the device, at this row of that launch.
    pending_step: int = 0
    pending_row: int = -1

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def last_token_id(self) -> int:
        return self.output_token_ids[-1] if self.output_token_ids else self.prompt_token_ids[-1]

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    def token_slice(self, start: int, end: int) -> list[int]:
        n_prompt = len(self.prompt_token_ids)
        if end <= n_prompt:
            return self.prompt_token_ids[start:end]
        return (self.prompt_token_ids[start:] if start < n_prompt else []) + self.output_token_ids[
            max(0, start - n_prompt) : end - n_prompt
        ]
