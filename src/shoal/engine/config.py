"""Settings: the model's shape (read from config.json) and the engine's startup capacity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen3ForCausalLM": "qwen3",
}
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    family: str  # "llama" | "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    sliding_window: int | None = None  # Mistral v0.1: attention sees only this many tokens back

    @classmethod
    def from_dict(cls, raw: dict, eos_extra: tuple[int, ...] = ()) -> ModelConfig:
        archs = raw.get("architectures") or []
        arch = archs[0] if archs else _arch_from_model_type(raw.get("model_type"))
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"unsupported architecture {arch!r} in config.json (architectures); "
                f"supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))}"
            )
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if key not in raw:
                raise ValueError(f"config.json is missing {key!r}")
        num_heads = raw["num_attention_heads"]
        rope = raw.get("rope_parameters") or {}  # transformers >= 5 nests theta and scaling here
        theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
        scaling = raw.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        return cls(
            architecture=arch,
            family=SUPPORTED_ARCHITECTURES[arch],
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=raw.get("num_key_value_heads") or num_heads,
            head_dim=raw.get("head_dim") or raw["hidden_size"] // num_heads,
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            rope_scaling=dict(scaling) if scaling else None,
            max_position_embeddings=raw.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            attention_bias=bool(raw.get("attention_bias", False)),
            eos_token_ids=tuple(dict.fromkeys(eos_ids + tuple(eos_extra))),
            bos_token_id=raw.get("bos_token_id"),
            sliding_window=raw.get("sliding_window") if raw.get("use_sliding_window", True) else None,
        )

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelConfig:
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: model_dir must be a Hugging Face model folder with config.json")
        raw = json.loads(path.read_text())
        extra: tuple[int, ...] = ()
        gen = Path(model_dir) / "generation_config.json"
        if gen.is_file():
            eos = json.loads(gen.read_text()).get("eos_token_id")
            extra = tuple(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        return cls.from_dict(raw, extra)


def _arch_from_model_type(model_type: str | None) -> str:
    return {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen3": "Qwen3ForCausalLM"}.get(
        model_type or "", str(model_type)
    )


@dataclass(frozen=True)
class EngineConfig:
    """Startup capacity of one engine; runtime limits move below max_num_seqs / max_num_batched_tokens."""

    model_dir: str
    device: str = "cpu"
    dtype: str = "float32"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    kv_cache_tokens: int | None = None  # None: sized from free memory
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    block_size: int = 16
    enable_prefix_caching: bool = True
    load_format: str = "safetensors"  # "dummy": random weights from config.json (benchmarks)
    seed: int = 0
    # Launch step N+1 before step N's tokens reach the host, so host work overlaps the GPU (outputs
    # arrive one step later). None: on for CUDA, off for CPU (where nothing runs asynchronously).
    async_scheduling: bool | None = None

    @property
    def overlaps_steps(self) -> bool:
        if self.async_scheduling is None:
            return self.device.startswith("cuda")
        return self.async_scheduling

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_num_batched_tokens < self.block_size:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= block_size ({self.block_size})"
            )
        for name in ("kv_cache_tokens", "max_model_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        if self.async_scheduling not in (None, True, False):
            raise ValueError(f"async_scheduling must be true, false or None (auto), got {self.async_scheduling!r}")
        if self.load_format not in ("safetensors", "dummy"):
            raise ValueError(f"load_format must be 'safetensors' or 'dummy', got {self.load_format!r}")
