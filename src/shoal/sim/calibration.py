"""Every number the simulated replica's step time depends on, in one place.

What calibrates it: NOT a measured engine benchmark yet. No GPU run of Shoal's engine on the Llama-3.1-8B
shape existed when this was written, so the step time is a roofline model of an H100 serving Llama-3.1-8B in
bf16, built from two measurements taken on this workplace's H100s (bf16 matmul ~790 TFLOP/s, device-to-device
copy ~3.0 TB/s) plus the model's shape. Replace `H100_LLAMA_3_1_8B` with fitted values once
bench/engine.py records step times on a GPU; nothing else in the simulator has to change.

Step time of one continuous-batching iteration (every running sequence decodes one token, plus up to the token
budget of prefill tokens):

    t = step_overhead + max(bytes / copy_bandwidth, flops / matmul_rate)
    bytes = weight_bytes + kv_bytes_per_token * (context tokens read by decodes + by prefill chunks)
    flops = 2 * params * (prefill tokens + decode tokens) + attention flops of the prefill chunks

The overhead term (scheduler + launch per step, 2 ms) is an assumption, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineCalibration:
    name: str
    params: float  # parameters
    weight_bytes: float
    kv_bytes_per_token: float  # K and V, all layers
    attn_flops_per_token_per_ctx: float  # QK^T and PV flops per query token per attended context token
    copy_bandwidth: float  # bytes/s, measured device copy
    matmul_rate: float  # flop/s, measured bf16 GEMM
    step_overhead_s: float  # assumed per-step CPU/launch cost
    kv_capacity_tokens: int  # KV cache size at gpuMemoryUtilization 0.9
    pod_start_delay_s: float  # assumed: pod scheduled -> /ready (image cached, weights on node disk)

    def __post_init__(self) -> None:
        for field in ("params", "weight_bytes", "kv_bytes_per_token", "copy_bandwidth", "matmul_rate"):
            if getattr(self, field) <= 0:
                raise ValueError(f"EngineCalibration.{field} must be > 0")
        if self.step_overhead_s < 0 or self.pod_start_delay_s < 0:
            raise ValueError("EngineCalibration step_overhead_s and pod_start_delay_s must be >= 0")
        if self.kv_capacity_tokens < 1:
            raise ValueError("EngineCalibration.kv_capacity_tokens must be >= 1")

    def step_seconds(self, prefill_tokens: int, prefill_ctx_sum: float, decode_seqs: int, decode_ctx: int) -> float:
        """Duration of one engine step.

        prefill_ctx_sum: sum over prefill tokens of the context each attends to (causal attention cost);
        decode_ctx: total context tokens read by the decoding sequences.
        """
        kv_read = decode_ctx + (prefill_ctx_sum / max(prefill_tokens, 1) if prefill_tokens else 0.0)
        mem = (self.weight_bytes + self.kv_bytes_per_token * kv_read) / self.copy_bandwidth
        flops = 2.0 * self.params * (prefill_tokens + decode_seqs)
        flops += self.attn_flops_per_token_per_ctx * (prefill_ctx_sum + decode_ctx)
        return self.step_overhead_s + max(mem, flops / self.matmul_rate)


def _llama_3_1_8b_h100() -> EngineCalibration:
    layers, kv_heads, head_dim, q_heads = 32, 8, 128, 32
    params = 8.03e9
    weight_bytes = params * 2  # bf16
    kv_bytes = 2 * layers * kv_heads * head_dim * 2  # K+V, bf16 -> 131072 B/token
    attn_flops = 4 * layers * q_heads * head_dim  # 2 (QK) + 2 (PV) flops per head dim per context token
    hbm = 80 * 2**30 * 0.90  # gpuMemoryUtilization 0.9
    activations = 2e9  # workspace + activations at 8192 batched tokens (estimate)
    return EngineCalibration(
        name="H100-80GB / Llama-3.1-8B bf16 (roofline: 790 TFLOP/s bf16, 3.0 TB/s copy)",
        params=params,
        weight_bytes=weight_bytes,
        kv_bytes_per_token=kv_bytes,
        attn_flops_per_token_per_ctx=attn_flops,
        copy_bandwidth=3.0e12,
        matmul_rate=790e12,
        step_overhead_s=0.002,
        kv_capacity_tokens=int((hbm - weight_bytes - activations) // kv_bytes),
        pod_start_delay_s=60.0,
    )


H100_LLAMA_3_1_8B = _llama_3_1_8b_h100()

# The engine's startup capacity and default runtime limits (DESIGN: spec.engine defaults).
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
