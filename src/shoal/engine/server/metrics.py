"""The engine's Prometheus metrics: the one place that knows their names, types and buckets.

Names, types and bucket boundaries mirror vLLM's (`vllm:` -> `shoal:`) so existing dashboards, KEDA triggers and
gateway rules carry over. Gauges and engine totals are refreshed from the engine at scrape time; request
histograms are observed by the HTTP handlers as requests finish.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
FINISHED_REASONS = ("stop", "length", "abort")

# engine cumulative totals (EngineStats field) -> counter attribute
_TOTALS = {
    "prompt_tokens_total": "prompt_tokens",
    "generation_tokens_total": "generation_tokens",
    "num_preemptions_total": "num_preemptions",
    "prefix_cache_queries_total": "prefix_cache_queries",
    "prefix_cache_hits_total": "prefix_cache_hits",
}


class EngineMetrics:
    def __init__(self, model_name: str):
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model_name"]

        def histogram(name: str, doc: str, buckets: tuple) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=self.registry).labels(model_name)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry).labels(model_name)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry).labels(model_name)

        self.time_to_first_token = histogram(
            "shoal:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.inter_token_latency = histogram(
            "shoal:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.e2e_request_latency = histogram(
            "shoal:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS)
        self.request_queue_time = histogram(
            "shoal:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS)
        self.iteration_tokens = histogram(
            "shoal:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_TOKENS_BUCKETS)

        self.num_requests_running = gauge("shoal:num_requests_running", "Number of requests in model execution.")
        self.num_requests_waiting = gauge("shoal:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_cache_usage = gauge("shoal:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.runtime_max_num_seqs = gauge(
            "shoal:runtime_max_num_seqs", "Runtime admission cap: most requests running at once.")
        self.runtime_max_num_batched_tokens = gauge(
            "shoal:runtime_max_num_batched_tokens", "Runtime token budget of one engine step.")

        self.prompt_tokens = counter("shoal:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("shoal:generation_tokens", "Number of generation tokens processed.")
        self.num_preemptions = counter("shoal:num_preemptions", "Cumulative number of preemptions from the engine.")
        self.prefix_cache_queries = counter(
            "shoal:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.")
        self.prefix_cache_hits = counter(
            "shoal:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        success = Counter("shoal:request_success", "Count of successfully processed requests.",
                          labels + ["finished_reason"], registry=self.registry)
        self.request_success = {r: success.labels(model_name, r) for r in FINISHED_REASONS}
        self._seen_totals = {name: 0 for name in _TOTALS}

    def observe_request(self, finished_reason: str, ttft_s: float | None, e2e_s: float,
                        queue_s: float | None) -> None:
        """One finished request (of any reason)."""
        if ttft_s is not None:
            self.time_to_first_token.observe(ttft_s)
        if queue_s is not None:
            self.request_queue_time.observe(queue_s)
        self.e2e_request_latency.observe(e2e_s)
        self.request_success[finished_reason if finished_reason in self.request_success else "abort"].inc()

    def observe_step(self, num_prompt_tokens: int, num_generation_tokens: int) -> None:
        self.iteration_tokens.observe(num_prompt_tokens + num_generation_tokens)

    def update_engine_state(self, stats, limits) -> None:
        """Refresh gauges and counters from EngineStats and RuntimeLimits (called at scrape time)."""
        self.num_requests_running.set(stats.num_running)
        self.num_requests_waiting.set(stats.num_waiting)
        self.kv_cache_usage.set(stats.kv_usage)
        self.runtime_max_num_seqs.set(limits.max_num_seqs)
        self.runtime_max_num_batched_tokens.set(limits.max_num_batched_tokens)
        for field, attr in _TOTALS.items():
            total = getattr(stats, field)
            delta = total - self._seen_totals[field]
            if delta > 0:  # engine totals only grow; counters take the increment
                getattr(self, attr).inc(delta)
                self._seen_totals[field] = total

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
