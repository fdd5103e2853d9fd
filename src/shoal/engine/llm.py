"""Offline generation: `LLM(model_dir).generate(prompts, params)`."""

from __future__ import annotations

import itertools

from shoal.engine.config import EngineConfig
from shoal.engine.llm_engine import LLMEngine
from shoal.engine.outputs import RequestOutput
from shoal.engine.sampling_params import SamplingParams
from shoal.engine.tokenizer import Tokenizer


class LLM:
    def __init__(self, model_dir, **engine_args) -> None:
        """`engine_args` are EngineConfig's fields (device, dtype, max_num_seqs, max_num_batched_tokens,
        kv_cache_tokens, max_model_len, block_size, enable_prefix_caching, load_format, seed), with its defaults."""
        self.engine = LLMEngine(EngineConfig(model_dir=str(model_dir), **engine_args))
        self._ids = itertools.count()

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.engine.tokenizer

    def generate(
        self,
        prompts: str | list[int] | list[str] | list[list[int]],
        params: SamplingParams | list[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt to completion; one finished RequestOutput per prompt, in order."""
        if isinstance(prompts, str) or (prompts and all(isinstance(t, int) for t in prompts)):
            prompts = [prompts]  # a single prompt
        params = SamplingParams() if params is None else params
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"params: got {len(params)} SamplingParams for {len(prompts)} prompts")
        engine = self.engine
        ids = [f"offline-{next(self._ids)}" for _ in prompts]
        results: dict[str, RequestOutput] = {}
        try:
            for rid, prompt, p in zip(ids, prompts, params):
                engine.add_request(rid, prompt, p)
            while len(results) < len(ids):
                for out in engine.step(stream=False):
                    if out.finished:
                        results[out.request_id] = out
        finally:
            for rid in ids:
                if rid not in results:
                    engine.abort(rid)
        return [results[rid] for rid in ids]
