"""Helpers of the server tests: real `shoal serve` child processes, metric scraping, crash detection."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN = "test-admin-token"
MAX_NUM_SEQS = 32  # startup capacity of the shared server
TINY = "tiny-llama"  # served name of the tiny random-weight model
CRASH_MARKERS = ("Traceback", "Error handling request", "Task exception was never retrieved", "Unhandled")


def start_server(model_dir: Path, *flags: str):
    from shoal.engine.server.launcher import ServerProcess

    return ServerProcess(["--model", str(model_dir), "--host", "127.0.0.1", "--port", "0", *flags]).start()


@contextlib.contextmanager
def serving(model_dir: Path, *flags: str):
    """A server for the duration of the block; afterwards SIGTERM must drain it to exit 0 with no crash logged."""
    proc = start_server(model_dir, *flags)
    yield proc
    proc.terminate()
    assert proc.wait(60) == 0
    assert crash_lines(proc.log()) == []


def crash_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(m in line for m in CRASH_MARKERS)]


def metric_values(text: str) -> dict[str, float]:
    """`name{labels}` -> value, through prometheus-client's own parser (so the text must parse)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "model_name")
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)



@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(method: str, url: str, body: object = None, headers: dict | None = None, raw: bytes | None = None) -> Reply:
    """One plain HTTP exchange (urllib: no client library between the test and the server)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def scrape(url: str) -> dict[str, float]:
    reply = call("GET", url + "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    return metric_values(reply.body.decode())


def histogram_count(values: dict[str, float], name: str) -> float:
    return values[f"shoal:{name}_count"]


def successes(values: dict[str, float]) -> float:
    return sum(v for k, v in values.items() if k.startswith("shoal:request_success_total{"))


def build_tiny_model(dst: Path, source: Path) -> Path:
    """A 2-layer random-weight Llama with the real model's tokenizer and chat template (for tests where the
    model's quality adds nothing and its speed on 2 CPU cores would cost minutes)."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (source / name).is_file():
            shutil.copy(source / name, dst / name)
    config = json.loads((source / "config.json").read_text())
    hidden, heads, kv_heads, head_dim, inter, layers = 64, 4, 2, 16, 128, 2
    config.update(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                  intermediate_size=inter, num_hidden_layers=layers, tie_word_embeddings=True)
    (dst / "config.json").write_text(json.dumps(config, indent=1))
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen) * 0.05

    weights = {"model.embed_tokens.weight": rand(config["vocab_size"], hidden), "model.norm.weight": torch.ones(hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        weights |= {
            p + "input_layernorm.weight": torch.ones(hidden),
            p + "post_attention_layernorm.weight": torch.ones(hidden),
            p + "self_attn.q_proj.weight": rand(heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": rand(kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": rand(kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": rand(hidden, heads * head_dim),
            p + "mlp.gate_proj.weight": rand(inter, hidden),
            p + "mlp.up_proj.weight": rand(inter, hidden),
            p + "mlp.down_proj.weight": rand(hidden, inter),
        }
    save_file(weights, str(dst / "model.safetensors"))
    return dst
