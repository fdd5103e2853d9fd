"""The demo's live terminal view (rich): load, replicas, latency against the SLO, batch limits, the operator's word."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shoal.fleet.report import Sample


def _ms(v: float | None, slo: float) -> Text:
    if v is None:
        return Text("-  (no data yet)", style="dim")
    return Text(f"{v:,.0f} ms", style="green" if v <= slo else "bold red")


def render(sample: Sample | None, *, title: str, elapsed_s: float, duration_s: float, slo_ttft_ms: float,
           slo_itl_ms: float, max_replicas: int, pods: list[tuple[str, str, str]], events: list[str],
           hints: list[str]) -> Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    if sample is None:
        table.add_row("status", "starting ...")
    else:
        table.add_row("load", f"{sample.sent_rps:.1f} req/s sent, {sample.done_rps:.1f} req/s done, {sample.in_flight} in flight")
        table.add_row("replicas", f"{_v(sample.replicas_ready)} ready / {_v(sample.replicas_desired)} desired "
                                  f"(max {max_replicas} on this machine)")
        row = Text()
        row.append_text(_ms(sample.ttft_p95_ms, slo_ttft_ms))
        row.append(f"   (SLO {slo_ttft_ms:,.0f} ms)")
        table.add_row("TTFT p95", row)
        row = Text()
        row.append_text(_ms(sample.itl_p95_ms, slo_itl_ms))
        row.append(f"   (SLO {slo_itl_ms:,.0f} ms)")
        table.add_row("ITL p95", row)
        engines = ", ".join(map(str, sample.engine_max_num_seqs)) or "-"
        table.add_row("batch limits", f"maxNumSeqs {_v(sample.max_num_seqs)}, maxNumBatchedTokens "
                                      f"{_v(sample.max_num_batched_tokens)}  (engines report {engines})")
        table.add_row("last decision", sample.decision or "-")
        table.add_row("last tuning", sample.tune_reason or "-")
    pod_table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for col in ("pod", "address", "state"):
        pod_table.add_column(col)
    for name, address, state in pods:
        pod_table.add_row(name, address, state)
    progress = f"{elapsed_s:,.0f} / {duration_s:,.0f} s" if duration_s else f"{elapsed_s:,.0f} s"
    parts = [
        Panel(table, title=f"{title}  [{progress}]", border_style="cyan"),
        Panel(pod_table, title="pods", border_style="blue"),
        Panel(Text("\n".join(events[-6:]) or "-"), title="recent events", border_style="blue"),
    ]
    if hints:
        parts.append(Text("\n".join(hints), style="dim"))
    return Group(*parts)


def _v(v) -> str:
    return "-" if v is None else str(v)
