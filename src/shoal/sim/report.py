"""Write a simulation's results: the JSON summary and the plot of load, replicas, batch limits and latency."""

from __future__ import annotations

import json
from pathlib import Path

SUMMARY_KEYS = ("attainment", "ttft_attainment", "itl_attainment", "gpu_hours", "goodput_rps", "goodput_fraction",
                "requests", "scale_events", "tune_events", "tune_events_warmup", "initial_limits_at_t0")


def summary(result: dict) -> dict:
    out = {k: result[k] for k in SUMMARY_KEYS}
    if "capacity_factor" in result:  # a derated oracle (bench/autoscale.py's oracle-slo)
        out["capacity_factor"] = result["capacity_factor"]
    return out


def write_json(path: str | Path, header: dict, results: dict[str, dict], detail: bool = True) -> None:
    """`{"trace", "rate_scale", "slo", ..., "policies": {name: summary (+ windows/logs when detail)}}`."""
    policies = {}
    for name, r in results.items():
        entry = summary(r)
        if detail:
            entry.update(windows=r["windows"], scale_log=r["scale_log"], tune_log=r["tune_log"])
        policies[name] = entry
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({**header, "policies": policies}, indent=1) + "\n")


def plot(path: str | Path, results: dict[str, dict], slo_ttft_s: float, slo_itl_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 1, figsize=(11, 13), sharex=True)
    first = next(iter(results.values()))
    ts = [p["t"] / 60 for p in first["timeline"]]
    axes[0].plot(ts, [p["arrival_rate"] or 0 for p in first["timeline"]], color="black")
    axes[0].set_ylabel("arrivals (req/s,\n1m rate)")
    for name, r in results.items():
        tl = r["timeline"]
        t = [p["t"] / 60 for p in tl]
        label = f"{name} ({r['attainment']:.0%}, {r['gpu_hours']:.2f} GPU-h)"
        axes[1].step(t, [p["replicas"] for p in tl], where="post", label=label)
        axes[2].step(t, [p["max_num_batched_tokens"] for p in tl], where="post", label=name)
        axes[3].plot(t, [(p["ttft_p95_s"] or 0) * 1000 for p in tl], label=name, lw=0.8)
        axes[4].plot(t, [(p["itl_p95_s"] or 0) * 1000 for p in tl], label=name, lw=0.8)
    axes[1].set_ylabel("replicas")
    axes[1].legend(fontsize=7, loc="upper left")
    axes[2].set_ylabel("token budget\n(maxNumBatchedTokens)")
    axes[2].set_yscale("log", base=2)
    axes[3].axhline(slo_ttft_s * 1000, color="red", ls="--", lw=0.8)
    axes[3].set_ylabel("TTFT p95 (ms,\nPrometheus est.)")
    axes[3].set_ylim(0, slo_ttft_s * 2500)
    axes[4].axhline(slo_itl_s * 1000, color="red", ls="--", lw=0.8)
    axes[4].set_ylabel("ITL p95 (ms,\nPrometheus est.)")
    axes[4].set_ylim(0, slo_itl_s * 2500)
    axes[4].set_xlabel("minute of the trace")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
