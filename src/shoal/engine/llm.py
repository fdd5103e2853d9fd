"""Offline generation: `LLM(model_dir).generate(prompts, params)`."""

from __future__ import annotations

import itertools

from shoal.engine.config import EngineConfig
from shoal.engine.llm_engine import LLMEngine
from shoal.engine.outputs import RequestOutput
from shoal.engine.sampling_params import SamplingParams
from shoal.engine.tokenizer import Tokenizer


def build_engine_config(model_dir, **kwargs) -> EngineConfig:
    return EngineConfig(model_dir=str(model_dir), **kwargs)


class LLM:
    def __init__(
        self,
        model_dir,
        device: str = "cpu",
        dtype: str = "float32",
        max_num_seqs: int = 256,
        max_num_batched_tokens: int = 8192,
        kv_cache_tokens: int | None = None,
        max_model_len: int | None = None,
        block_size: int = 16,
        enable_prefix_caching: bool = True,
        **extra,
    ) -> None:
        self.engine = LLMEngine(
            build_engine_config(
                model_dir,
                device=device,
                dtype=dtype,
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_batched_tokens,
                kv_cache_tokens=kv_cache_tokens,
                max_model_len=max_model_len,
                block_size=block_size,
                enable_prefix_caching=enable_prefix_caching,
                **extra,  # load_format="dummy", seed: for benchmarks with random weights
            )
        )
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
