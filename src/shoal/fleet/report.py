"""The demo's record: one sample a second while it runs, then a markdown report and a PNG plot made from them.

Pure functions of the samples and request records, so the report can be rebuilt (and tested) without a fleet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from shoal.fleet.loadgen import RequestRecord, percentile


@dataclass
class Sample:
    t: float  # seconds since the load started
    sent_rps: float
    done_rps: float
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    replicas_desired: int | None
    replicas_ready: int | None
    max_num_seqs: int | None  # the operator's current admission cap (status.batch)
    engine_max_num_seqs: list[int] = field(default_factory=list)  # shoal:runtime_max_num_seqs per pod, via Prometheus
    max_num_batched_tokens: int | None = None
    decision: str = ""
    tune_reason: str = ""
    in_flight: int = 0


@dataclass(frozen=True)
class RunInfo:
    command: str
    machine: str
    capacity_note: str
    trace_note: str
    slo_ttft_ms: float
    slo_itl_ms: float
    window_s: float
    started: str
    duration_s: float
    service: str
    example_file: str


def events(samples: list[Sample]) -> list[tuple[float, str]]:
    """Replica and batch-limit changes as (time, sentence), read from consecutive samples."""
    out: list[tuple[float, str]] = []
    prev: Sample | None = None
    for s in samples:
        if prev is not None:
            if s.replicas_desired is not None and prev.replicas_desired is not None and s.replicas_desired != prev.replicas_desired:
                out.append((s.t, f"replicas {prev.replicas_desired} -> {s.replicas_desired}: {s.decision or '(no reason given)'}"))
            if s.max_num_seqs is not None and prev.max_num_seqs is not None and s.max_num_seqs != prev.max_num_seqs:
                out.append((s.t, f"maxNumSeqs {prev.max_num_seqs} -> {s.max_num_seqs}: {s.tune_reason or '(no reason given)'}"))
            elif (s.max_num_batched_tokens is not None and prev.max_num_batched_tokens is not None
                  and s.max_num_batched_tokens != prev.max_num_batched_tokens):
                out.append((s.t, f"maxNumBatchedTokens {prev.max_num_batched_tokens} -> {s.max_num_batched_tokens}: "
                                 f"{s.tune_reason or '(no reason given)'}"))
        prev = s
    return out


def attainment(samples: list[Sample], slo_ttft_ms: float, slo_itl_ms: float) -> tuple[float | None, int]:
    """Share of samples with data whose windowed p95s meet both SLOs, and how many samples had data."""
    judged = [s for s in samples if s.ttft_p95_ms is not None and s.itl_p95_ms is not None]
    if not judged:
        return None, 0
    good = sum(s.ttft_p95_ms <= slo_ttft_ms and s.itl_p95_ms <= slo_itl_ms for s in judged)
    return good / len(judged), len(judged)


def summary(records: list[RequestRecord]) -> dict:
    ok = [r for r in records if r.ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    gaps = [g for r in ok for g in r.token_gaps]
    return {
        "sent": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "errors": sorted({r.error for r in records if r.error})[:5],
        "ttft_p50_ms": _ms(percentile(ttfts, 50)),
        "ttft_p95_ms": _ms(percentile(ttfts, 95)),
        "itl_p50_ms": _ms(percentile(gaps, 50)),
        "itl_p95_ms": _ms(percentile(gaps, 95)),
        "output_tokens": sum(r.output_tokens for r in ok),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(1000 * v, 1)


def _fmt(v, unit: str = "") -> str:
    return "-" if v is None else f"{v:g}{unit}"


def build_markdown(info: RunInfo, samples: list[Sample], records: list[RequestRecord], plot_name: str) -> str:
    s = summary(records)
    att, judged = attainment(samples, info.slo_ttft_ms, info.slo_itl_ms)
    replicas = [x.replicas_desired for x in samples if x.replicas_desired is not None]
    seqs = [x.max_num_seqs for x in samples if x.max_num_seqs is not None]
    budgets = [x.max_num_batched_tokens for x in samples if x.max_num_batched_tokens is not None]
    engine_seqs = sorted({v for x in samples for v in x.engine_max_num_seqs})
    lines = [
        f"# Shoal local fleet demo — {info.started}",
        "",
        f"Command: `{info.command}`",
        "",
        f"Machine: {info.machine}. Capacity: {info.capacity_note}.",
        "",
        f"InferenceService `{info.service}` from `{info.example_file}`; SLO TTFT p95 <= {info.slo_ttft_ms:g} ms, "
        f"ITL p95 <= {info.slo_itl_ms:g} ms.",
        "",
        f"Load: {info.trace_note}.",
        "",
        f"![run]({plot_name})",
        "",
        "## Outcome",
        "",
        "| | |",
        "|---|---|",
        f"| requests sent / succeeded / failed | {s['sent']} / {s['ok']} / {s['failed']} |",
        f"| TTFT p50 / p95 (whole run, client side) | {_fmt(s['ttft_p50_ms'], ' ms')} / {_fmt(s['ttft_p95_ms'], ' ms')} |",
        f"| ITL p50 / p95 (whole run, client side) | {_fmt(s['itl_p50_ms'], ' ms')} / {_fmt(s['itl_p95_ms'], ' ms')} |",
        f"| samples meeting both SLOs ({info.window_s:g} s windows) | "
        f"{'-' if att is None else f'{100 * att:.0f}%'} of {judged} |",
        f"| replicas (operator's desired) | min {_fmt(min(replicas) if replicas else None)}, "
        f"max {_fmt(max(replicas) if replicas else None)} |",
        f"| admission cap maxNumSeqs (operator status) | "
        f"{'-' if not seqs else f'{min(seqs)} .. {max(seqs)}'} |",
        f"| token budget maxNumBatchedTokens (operator status) | "
        f"{'-' if not budgets else f'{min(budgets)} .. {max(budgets)}'} |",
        f"| `shoal:runtime_max_num_seqs` values scraped from the engines | {', '.join(map(str, engine_seqs)) or '-'} |",
        f"| output tokens served | {s['output_tokens']} in {info.duration_s:.0f} s |",
        "",
    ]
    if s["errors"]:
        lines += ["Errors seen: " + "; ".join(f"`{e}`" for e in s["errors"]), ""]
    lines += ["## What the operator did", ""]
    evs = events(samples)
    lines += [f"- t={t:5.0f} s: {text}" for t, text in evs] or ["- nothing changed during the run"]
    lines.append("")
    return "\n".join(lines)


def plot(samples: list[Sample], info: RunInfo, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    t = [s.t for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    ax = axes[0]
    ax.plot(t, [s.sent_rps for s in samples], label="sent req/s")
    ax.plot(t, [s.done_rps for s in samples], label="completed req/s")
    ax.set_ylabel("load")
    ax.legend(loc="upper left")
    ax = axes[1]
    ax.step(t, [_nan(s.replicas_desired) for s in samples], where="post", label="desired (operator)")
    ax.step(t, [_nan(s.replicas_ready) for s in samples], where="post", label="ready")
    ax.set_ylabel("replicas")
    ax.set_ylim(0, max([s.replicas_desired or 0 for s in samples] + [s.replicas_ready or 0 for s in samples] + [1]) + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left")
    ax = axes[2]
    ax.plot(t, [_nan(s.ttft_p95_ms) for s in samples], label="TTFT p95")
    ax.plot(t, [_nan(s.itl_p95_ms) for s in samples], label="ITL p95")
    ax.axhline(info.slo_ttft_ms, color="C0", linestyle="--", linewidth=0.8, label="TTFT SLO")
    ax.axhline(info.slo_itl_ms, color="C1", linestyle="--", linewidth=0.8, label="ITL SLO")
    ax.set_yscale("log")
    ax.set_ylabel(f"ms ({info.window_s:g} s window)")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[3]
    ax.step(t, [_nan(s.max_num_seqs) for s in samples], where="post", label="maxNumSeqs (operator)")
    ax.plot(t, [_nan(max(s.engine_max_num_seqs)) if s.engine_max_num_seqs else float("nan") for s in samples],
            ".", markersize=3, label="shoal:runtime_max_num_seqs (max over pods)")
    ax.set_ylabel("admission cap (seqs)")
    ax.set_xlabel("seconds since load started")
    ax.legend(loc="upper left", fontsize=8)
    budget = ax.twinx()
    budget.step(t, [_nan(s.max_num_batched_tokens) for s in samples], where="post", color="C2",
                label="maxNumBatchedTokens (operator)")
    budget.set_ylabel("token budget")
    budget.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Shoal local fleet demo: {info.service}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def samples_as_dicts(samples: list[Sample]) -> list[dict]:
    return [asdict(s) for s in samples]
