"""The live view shows replicas, p95s against the SLO, batch limits and the operator's reason."""

from rich.console import Console

from shoal.fleet.report import Sample
from shoal.fleet.view import render


def text_of(group) -> str:
    console = Console(record=True, width=140)
    console.print(group)
    return console.export_text()


def test_view_shows_what_the_operator_sees_and_decides():
    sample = Sample(t=12, sent_rps=1.5, done_rps=1.2, ttft_p95_ms=3100, itl_p95_ms=90, replicas_desired=2,
                    replicas_ready=1, max_num_seqs=12, engine_max_num_seqs=[12, 16], max_num_batched_tokens=1024,
                    decision="TTFT p95 3.1 s > 2.5 s SLO: scale up", tune_reason="ITL has room", in_flight=4)
    out = text_of(render(sample, title="default/chat", elapsed_s=12, duration_s=240, slo_ttft_ms=2500, slo_itl_ms=200,
                         max_replicas=2, pods=[("chat-a", "127.1.0.2:8000", "Ready, cores [0]")],
                         events=["started chat-a"], hints=["kubeconfig: /x"]))
    for expected in ("1 ready / 2 desired", "3,100 ms", "SLO 2,500 ms", "90 ms", "maxNumSeqs 12",
                     "engines report 12, 16", "scale up", "ITL has room", "chat-a", "kubeconfig: /x", "12 / 240 s"):
        assert expected in out, expected


def test_view_before_data_says_so():
    out = text_of(render(Sample(0, 0, 0, None, None, 1, 0, None), title="t", elapsed_s=0, duration_s=0,
                         slo_ttft_ms=1, slo_itl_ms=1, max_replicas=1, pods=[], events=[], hints=[]))
    assert "no data yet" in out
    assert "starting" in text_of(render(None, title="t", elapsed_s=0, duration_s=0, slo_ttft_ms=1, slo_itl_ms=1,
                                        max_replicas=1, pods=[], events=[], hints=[]))
