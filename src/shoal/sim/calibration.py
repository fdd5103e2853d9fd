"""Every number the simulated replica's step time depends on, in one place.

What calibrates it: the GPU engine benchmark (bench/results/engine_throughput_gpu.json: Shoal's engine on an H100
80GB HBM3, Llama-3.1-8B shape, bf16, random weights), fitted by `bench/calibrate_sim.py`
(bench/results/sim_calibration.json):

    step = step_overhead + step_overhead_per_seq x sequences in the step
           + max(bytes / copy_bandwidth, flops / matmul_rate)
    bytes = streamed weight bytes + kv_bytes_per_token x (context tokens read by decodes and prefill chunks)
    flops = 2 x params x (prefill + decode tokens) + attention flops of the prefill chunks

- measured: weight bytes streamed per step (15.01 GB) and copy bandwidth (2.942 TB/s) in the batch-1 run;
- fitted: step_overhead + step_overhead_per_seq = batch-1 decode time (6.35 ms) - weights / bandwidth; the split
  (1.24 ms + 13.5 us per sequence) makes the simulator replay the 256-sequence nano-vllm protocol in the measured
  16.70 s -- and it then takes 1,025 engine steps against the measured 1,024, which nothing forced (refitted
  2026-11-27 after asynchronous scheduling; the first fit, 1.66 ms + 43.7 us to 21.35 s, is in git history);
- not validated by that benchmark: the prefill rate (790 TFLOP/s, this workplace's measured bf16 GEMM rate; the
  protocol's prefill is a small share of its time), the KV cache size (the 289,296 tokens the engine sized in that
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
    # measured seconds of a step by the tokens it computes, interpolated; replaces bytes and flops when set (a CPU
    # server, whose matmul time is not monotonic in rows: see fit_cpu_step_model)
    step_table: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        for field in ("params", "weight_bytes", "kv_bytes_per_token", "copy_bandwidth", "matmul_rate"):
            if getattr(self, field) <= 0:
                raise ValueError(f"EngineCalibration.{field} must be > 0")
        if min(self.step_overhead_s, self.step_overhead_per_seq_s, self.pod_start_delay_s) < 0:
            raise ValueError("EngineCalibration overheads and pod_start_delay_s must be >= 0")
        if self.step_table and (len(self.step_table) < 2 or any(t <= 0 for _, t in self.step_table)
                                or [n for n, _ in self.step_table] != sorted({n for n, _ in self.step_table})):
            raise ValueError("EngineCalibration.step_table needs >= 2 (tokens, seconds > 0) rows, tokens increasing")
        if self.kv_capacity_tokens < 1:
            raise ValueError("EngineCalibration.kv_capacity_tokens must be >= 1")

    def step_seconds(self, prefill_tokens: int, prefill_ctx_sum: float, decode_seqs: int, decode_ctx: int,
                     prefill_seqs: int = 0) -> float:
        """Duration of one engine step.

        prefill_ctx_sum: sum over prefill tokens of the context each attends to (causal attention cost);
        decode_ctx: total context tokens read by the decoding sequences.
        """
        host = self.step_overhead_s + self.step_overhead_per_seq_s * (decode_seqs + prefill_seqs)
        if self.step_table:
            return host + _interpolate(self.step_table, prefill_tokens + decode_seqs)
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
        copy_bandwidth=2.942e12,
        matmul_rate=790e12,
        step_overhead_s=0.001239,
        step_overhead_per_seq_s=13.5e-6,
        kv_capacity_tokens=289_296,
        pod_start_delay_s=60.0,
    )


H100_LLAMA_3_1_8B = _llama_3_1_8b_h100()

# SmolLM2-135M-Instruct (30 layers, 9 query / 3 KV heads of 64), float32: the real CPU server bench/sim_vs_engine.py
# checks the model against
SMOLLM2_PARAMS, SMOLLM2_LAYERS, SMOLLM2_Q_HEADS, SMOLLM2_KV_HEADS, SMOLLM2_HEAD_DIM = 134.5e6, 30, 9, 3, 64


def fit_cpu_step_model(decode: list[tuple[int, float]], prefill: list[tuple[int, float]], kv_capacity_tokens: int,
                       name: str) -> EngineCalibration:
    """The CPU server's steps as measured: SmolLM2-135M float32 on one core.

    decode: (batch size b, seconds per decode step), a step computing b tokens; prefill: (prompt tokens n <= the
    token budget, seconds to the first token), a step computing n tokens. Why a table and not a formula: on one
    core a step is its matmuls, and PyTorch's CPU matmul time is not monotonic in rows (2 and 3 rows cost more
    than 4: measured 148, 207 and 175 us for one 576 x 1536 projection at 2, 3 and 4 rows vs 74 us at 1), so no
    roofline or line through these points fits the decode steps of 2-3 sequences that a light load runs most.
    A step computing T tokens (decodes plus prefill chunk) costs the table at T, interpolated linearly. What the
    table does not see: the per-sequence streaming work of the extra sequences in a mixed step.
    """
    if len({b for b, _ in decode}) < 2 or len({n for n, _ in prefill}) < 2:
        raise ValueError("fit_cpu_step_model needs decode steps at >= 2 batch sizes and prefills at >= 2 lengths")
    rows: dict[int, list[float]] = {}
    for tokens, seconds in [*decode, *prefill]:
        if seconds <= 0:
            raise ValueError(f"fit_cpu_step_model: a step of {tokens} tokens measured {seconds} s; rerun the timing")
        rows.setdefault(int(tokens), []).append(seconds)
    table = tuple((n, sum(v) / len(v)) for n, v in sorted(rows.items()))
    weight_bytes = SMOLLM2_PARAMS * 4
    n, t = table[-1]
    return EngineCalibration(  # bandwidth and flop rate are for reading only: the table sets the step time
        name=name, params=SMOLLM2_PARAMS, weight_bytes=weight_bytes,
        kv_bytes_per_token=2 * SMOLLM2_LAYERS * SMOLLM2_KV_HEADS * SMOLLM2_HEAD_DIM * 4,
        attn_flops_per_token_per_ctx=4 * SMOLLM2_LAYERS * SMOLLM2_Q_HEADS * SMOLLM2_HEAD_DIM,
        copy_bandwidth=weight_bytes / table[0][1], matmul_rate=2 * SMOLLM2_PARAMS * n / t, step_overhead_s=0.0,
        step_overhead_per_seq_s=0.0, kv_capacity_tokens=kv_capacity_tokens, pod_start_delay_s=0.0,
        step_table=table)


def _interpolate(table: tuple[tuple[int, float], ...], x: float) -> float:
    """Piecewise linear through the rows; flat below the first, the last segment's slope beyond the last."""
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in zip(table, table[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = table[-2], table[-1]
    return y1 + (y1 - y0) * (x - x1) / (x1 - x0)


# The engine's startup capacity and default runtime limits (DESIGN: spec.engine defaults).
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
