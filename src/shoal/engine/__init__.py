"""Shoal's inference engine: paged KV cache, continuous batching, runtime-adjustable batch limits.

LLM and AsyncLLM import torch, so they load on first use; the light types load at once.
"""

from shoal.engine.config import EngineConfig
from shoal.engine.outputs import EngineStats, RequestMetrics, RequestOutput, RuntimeLimits, StepStats
from shoal.engine.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "AsyncLLM",
    "SamplingParams",
    "RequestOutput",
    "RequestMetrics",
    "EngineConfig",
    "EngineStats",
    "RuntimeLimits",
    "StepStats",
]


def __getattr__(name: str):
    if name == "LLM":
        from shoal.engine.llm import LLM

        return LLM
    if name == "AsyncLLM":
        from shoal.engine.async_llm import AsyncLLM

        return AsyncLLM
    raise AttributeError(f"module 'shoal.engine' has no attribute {name!r}")
