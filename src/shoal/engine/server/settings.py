"""The one settings object of `shoal serve`, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    model: Path
    host: str = "0.0.0.0"
    port: int = 8000
    device: str = "cpu"
    dtype: str = "float32"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int | None = None
    kv_cache_tokens: int | None = None
    block_size: int = 16
    enable_prefix_caching: bool = True
    served_model_name: str | None = None
    admin_token_file: Path | None = None
    runtime_config_dir: Path | None = None
    drain_timeout: float = 30.0
    max_waiting: int = 1024
    health_stall_seconds: float = 60.0
    load_format: str = "safetensors"  # "dummy": random weights of config.json's shapes (benchmarks)
    stream_interval: int = 1  # tokens gathered before a chunk is sent (the last may hold fewer): fewer writes
    engine_process: bool = False  # step loop in a child process: the HTTP loop and the engine share no GIL
    admission_window_ms: float = 2.0  # engine process: an idle engine gathers a burst's requests for one prefill

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535] (0 picks a free one), got {self.port}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_model_len", "kv_cache_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or unset, got {value}")
        if self.drain_timeout < 0:
            raise ValueError(f"drain_timeout must be >= 0 seconds, got {self.drain_timeout}")
        if self.max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0 (0 refuses any queueing), got {self.max_waiting}")
        if self.stream_interval < 1:
            raise ValueError(f"stream_interval must be >= 1 token, got {self.stream_interval}")
        if not 0 <= self.admission_window_ms <= 1000:
            raise ValueError(f"admission_window_ms must be in [0, 1000] (0: step at the first request), "
                             f"got {self.admission_window_ms}")
        if self.health_stall_seconds <= 0:
            raise ValueError(f"health_stall_seconds must be > 0, got {self.health_stall_seconds}")
        if self.load_format not in ("safetensors", "dummy"):
            raise ValueError(f"load_format must be 'safetensors' or 'dummy', got {self.load_format!r}")
        if self.served_model_name == "":
            raise ValueError("served_model_name must not be empty; omit it to use the model folder's name")

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model.name

    def engine_kwargs(self) -> dict:
        """Arguments of LLM / AsyncLLM (see INTERFACES.md)."""
        return {
            "device": self.device,
            "dtype": self.dtype,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_model_len": self.max_model_len,
            "block_size": self.block_size,
            "enable_prefix_caching": self.enable_prefix_caching,
            "load_format": self.load_format,
        }
