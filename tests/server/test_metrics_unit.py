"""EngineMetrics: DESIGN's names, vLLM's buckets, text that prometheus-client parses back, monotonic totals."""

from prometheus_client.parser import text_string_to_metric_families

from shoal.engine.outputs import EngineStats, RuntimeLimits
from shoal.engine.server.metrics import (ITERATION_TOKENS_BUCKETS, ITL_BUCKETS, REQUEST_LATENCY_BUCKETS,
                                         TTFT_BUCKETS, EngineMetrics)


def families(metrics: EngineMetrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def stats(**kw) -> EngineStats:
    base = dict(num_running=0, num_waiting=0, kv_usage=0.0, num_preemptions_total=0, prefix_cache_queries_total=0,
                prefix_cache_hits_total=0, prompt_tokens_total=0, generation_tokens_total=0, last_step_time=None,
                steps_total=0)
    return EngineStats(**{**base, **kw})


def test_names_types_and_labels():
    fams = families(EngineMetrics("smol"))
    expected = {
        "shoal:time_to_first_token_seconds": "histogram", "shoal:inter_token_latency_seconds": "histogram",
        "shoal:e2e_request_latency_seconds": "histogram", "shoal:request_queue_time_seconds": "histogram",
        "shoal:iteration_tokens_total": "histogram",
        "shoal:num_requests_running": "gauge", "shoal:num_requests_waiting": "gauge",
        "shoal:kv_cache_usage_perc": "gauge", "shoal:runtime_max_num_seqs": "gauge",
        "shoal:runtime_max_num_batched_tokens": "gauge",
        "shoal:prompt_tokens": "counter", "shoal:generation_tokens": "counter", "shoal:num_preemptions": "counter",
        "shoal:request_success": "counter", "shoal:prefix_cache_queries": "counter",
        "shoal:prefix_cache_hits": "counter",
    }
    assert {name: fams[name].type for name in expected} == expected
    for fam in fams.values():
        assert all(s.labels["model_name"] == "smol" for s in fam.samples), fam.name


def test_buckets_mirror_vllm():
    fams = families(EngineMetrics("m"))
    for name, buckets in [("shoal:time_to_first_token_seconds", TTFT_BUCKETS),
                          ("shoal:inter_token_latency_seconds", ITL_BUCKETS),
                          ("shoal:e2e_request_latency_seconds", REQUEST_LATENCY_BUCKETS),
                          ("shoal:request_queue_time_seconds", REQUEST_LATENCY_BUCKETS),
                          ("shoal:iteration_tokens_total", ITERATION_TOKENS_BUCKETS)]:
        les = [s.labels["le"] for s in fams[name].samples if s.name.endswith("_bucket")]
        assert [float(x) for x in les[:-1]] == [float(b) for b in buckets] and les[-1] == "+Inf"
    assert TTFT_BUCKETS[:3] == (0.001, 0.005, 0.01) and REQUEST_LATENCY_BUCKETS[-1] == 7680.0


def sample(fams, family, suffix, **labels):
    return next(s.value for s in fams[family].samples
                if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()))


def test_requests_and_engine_state():
    m = EngineMetrics("m")
    m.observe_request("stop", ttft_s=0.02, e2e_s=0.5, queue_s=0.001)
    m.observe_request("length", ttft_s=None, e2e_s=0.1, queue_s=None)
    m.observe_step(30, 2)
    m.update_engine_state(stats(num_running=3, num_waiting=1, kv_usage=0.25, prompt_tokens_total=100,
                                generation_tokens_total=7), RuntimeLimits(8, 512))
    m.update_engine_state(stats(num_running=2, prompt_tokens_total=130, generation_tokens_total=9),
                          RuntimeLimits(4, 512))
    fams = families(m)
    assert sample(fams, "shoal:e2e_request_latency_seconds", "_count") == 2
    assert sample(fams, "shoal:time_to_first_token_seconds", "_count") == 1
    assert sample(fams, "shoal:request_success", "_total", finished_reason="stop") == 1
    assert sample(fams, "shoal:request_success", "_total", finished_reason="length") == 1
    assert sample(fams, "shoal:iteration_tokens_total", "_bucket", le="32.0") == 1
    assert sample(fams, "shoal:prompt_tokens", "_total") == 130
    assert sample(fams, "shoal:generation_tokens", "_total") == 9
    assert sample(fams, "shoal:num_requests_running", "") == 2
    assert sample(fams, "shoal:runtime_max_num_seqs", "") == 4
    assert sample(fams, "shoal:kv_cache_usage_perc", "") == 0.0
