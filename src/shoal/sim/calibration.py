"""Every number the simulated replica's step time depends on, in one place.

What calibrates it: the GPU engine benchmark (bench/results/engine_throughput_gpu.json: Shoal's engine on an H100
80GB HBM3, Llama-3.1-8B shape, bf16, random weights), fitted by `bench/calibrate_sim.py`
(bench/results/sim_calibration.json):

    step = step_overhead + step_overhead_per_seq x sequences in the step
           + max(bytes / copy_bandwidth, flops / matmul_rate)
    bytes = streamed weight bytes + kv_bytes_per_token x (context tokens read by decodes and prefill chunks)
    flops = 2 x params x (prefill + decode tokens) + attention flops of the prefill chunks

- measured: weight bytes streamed per step (15.01 GB) and copy bandwidth (2.954 TB/s) in the batch-1 run;
- fitted: step_overhead + step_overhead_per_seq = batch-1 decode time (6.78 ms) - weights / bandwidth; the split
  (1.66 ms + 43.7 us per sequence) makes the simulator replay the 256-sequence nano-vllm protocol in the measured
  21.35 s -- and it then also takes the measured number of engine steps (1,025), which nothing forced;
- not validated by that benchmark: the prefill rate (790 TFLOP/s, this workplace's measured bf16 GEMM rate; the
  protocol's prefill is a small share of its time), the KV cache size (the 300,336 tokens the engine sized in that
  run), and the pod start delay (60 s, assumed: image cached, weights on node disk).

The same class also carries the model of the real CPU server that bench/sim_vs_engine.py checks the simulator
against (fit_cpu_step_model: SmolLM2-135M on one core, fitted to step timings measured in that run).
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
    step_overhead_s: float  # host work per step that does not overlap the GPU
    step_overhead_per_seq_s: float  # ... and per sequence scheduled in the step (prepare, sample, detokenize)
    kv_capacity_tokens: int  # KV cache size in tokens
    pod_start_delay_s: float  # assumed: pod scheduled -> /ready (image cached, weights on node disk)
    step_per_token_s: float = 0.0  # per token computed, not overlapped with the weight reads (a CPU step; 0 on GPU)

    def __post_init__(self) -> None:
        for field in ("params", "weight_bytes", "kv_bytes_per_token", "copy_bandwidth", "matmul_rate"):
            if getattr(self, field) <= 0:
                raise ValueError(f"EngineCalibration.{field} must be > 0")
        if min(self.step_overhead_s, self.step_overhead_per_seq_s, self.step_per_token_s, self.pod_start_delay_s) < 0:
            raise ValueError("EngineCalibration overheads, step_per_token_s and pod_start_delay_s must be >= 0")
        if self.kv_capacity_tokens < 1:
            raise ValueError("EngineCalibration.kv_capacity_tokens must be >= 1")

    def step_seconds(self, prefill_tokens: int, prefill_ctx_sum: float, decode_seqs: int, decode_ctx: int,
                     prefill_seqs: int = 0) -> float:
        """Duration of one engine step.

        prefill_ctx_sum: sum over prefill tokens of the context each attends to (causal attention cost);
        decode_ctx: total context tokens read by the decoding sequences.
        """
        host = self.step_overhead_s + self.step_overhead_per_seq_s * (decode_seqs + prefill_seqs)
        host += self.step_per_token_s * (prefill_tokens + decode_seqs)
        kv_read = decode_ctx + (prefill_ctx_sum / max(prefill_tokens, 1) if prefill_tokens else 0.0)
        mem = (self.weight_bytes + self.kv_bytes_per_token * kv_read) / self.copy_bandwidth
        flops = 2.0 * self.params * (prefill_tokens + decode_seqs)
        flops += self.attn_flops_per_token_per_ctx * (prefill_ctx_sum + decode_ctx)
        return host + max(mem, flops / self.matmul_rate)


def _llama_3_1_8b_h100() -> EngineCalibration:
    layers, kv_heads, head_dim, q_heads = 32, 8, 128, 32
    params = 8.03e9
    kv_bytes = 2 * layers * kv_heads * head_dim * 2  # K+V, bf16 -> 131072 B/token
    attn_flops = 4 * layers * q_heads * head_dim  # 2 (QK) + 2 (PV) flops per head dim per context token
    return EngineCalibration(
        name="H100-80GB / Llama-3.1-8B bf16 (fitted to the GPU engine benchmark, bench/calibrate_sim.py)",
        params=params,
        weight_bytes=15_009_849_344,  # streamed per step (the batch-1 run)
        kv_bytes_per_token=kv_bytes,
        attn_flops_per_token_per_ctx=attn_flops,
        copy_bandwidth=2.954e12,
        matmul_rate=790e12,
        step_overhead_s=0.001656,
        step_overhead_per_seq_s=43.7e-6,
        kv_capacity_tokens=300_336,
        pod_start_delay_s=60.0,
    )


H100_LLAMA_3_1_8B = _llama_3_1_8b_h100()

# SmolLM2-135M-Instruct (30 layers, 9 query / 3 KV heads of 64), float32: the real CPU server bench/sim_vs_engine.py
# checks the model against
SMOLLM2_PARAMS, SMOLLM2_LAYERS, SMOLLM2_Q_HEADS, SMOLLM2_KV_HEADS, SMOLLM2_HEAD_DIM = 134.5e6, 30, 9, 3, 64


def fit_cpu_step_model(decode: list[tuple[int, float]], prefill: list[tuple[int, float]], kv_capacity_tokens: int,
                       name: str) -> EngineCalibration:
    """Fit step = a + s x sequences + c x tokens to measured CPU steps: SmolLM2-135M float32.

    decode: (batch size b, seconds per decode step), a step of b sequences and b tokens;
    prefill: (prompt tokens n <= the token budget, seconds to the first token), a step of 1 sequence and n tokens.
    Why additive (no max(bytes, flops) as on the GPU): on a CPU core the weight reads and the matmuls do not overlap,
    so a step costs a weights pass (a) plus the per-token compute (c); s is what each scheduled sequence adds beyond
    its token (sampling, detokenizing, streaming it over HTTP in the same process). The weights pass is carried as
    weight bytes / copy bandwidth so the KV reads cost the same bandwidth; matmuls are in c, so the flop rate is moot.
    """
    if len({b for b, _ in decode}) < 2 or len({n for n, _ in prefill}) < 2:
        raise ValueError("fit_cpu_step_model needs decode steps at >= 2 batch sizes and prefills at >= 2 lengths")
    rows = [(1.0, b, b, t) for b, t in decode] + [(1.0, 1, n, t) for n, t in prefill]
    a, s, c = _least_squares(rows)
    if a <= 0 or min(s, c) < 0:
        raise ValueError(f"measured steps give a={a:.4f} s, s={s:.4f} s, c={c:.4f} s: not a step model (too noisy "
                         "or contended: rerun on a quieter machine)")
    weight_bytes = SMOLLM2_PARAMS * 4
    return EngineCalibration(
        name=name, params=SMOLLM2_PARAMS, weight_bytes=weight_bytes,
        kv_bytes_per_token=2 * SMOLLM2_LAYERS * SMOLLM2_KV_HEADS * SMOLLM2_HEAD_DIM * 4,
        attn_flops_per_token_per_ctx=4 * SMOLLM2_LAYERS * SMOLLM2_Q_HEADS * SMOLLM2_HEAD_DIM,
        copy_bandwidth=weight_bytes / a, matmul_rate=1e30, step_overhead_s=0.0, step_overhead_per_seq_s=s,
        step_per_token_s=c, kv_capacity_tokens=kv_capacity_tokens, pod_start_delay_s=0.0)


def _least_squares(rows: list[tuple[float, float, float, float]]) -> tuple[float, float, float]:
    """Solve min sum (x . (a, s, c) - t)^2 over rows (x0, x1, x2, t) by the normal equations."""
    m = [[sum(r[i] * r[j] for r in rows) for j in range(3)] + [sum(r[i] * r[3] for r in rows)] for i in range(3)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda i: abs(m[i][col]))
        if abs(m[pivot][col]) < 1e-12:
            raise ValueError("fit_cpu_step_model: the measurements do not determine the model")
        m[col], m[pivot] = m[pivot], m[col]
        for i in range(3):
            if i != col:
                f = m[i][col] / m[col][col]
                m[i] = [x - f * y for x, y in zip(m[i], m[col])]
    return tuple(m[i][3] / m[i][i] for i in range(3))


# The engine's startup capacity and default runtime limits (DESIGN: spec.engine defaults).
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
