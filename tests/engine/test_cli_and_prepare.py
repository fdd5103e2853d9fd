"""`shoal model prepare smollm2` (idempotent, prints the folder) and `shoal generate` (offline, honest output)."""

from __future__ import annotations

import json

from shoal.cli import main
from shoal.engine.model_prepare import DONE_MARKER, REQUIRED_FILES, model_folder, prepare


def test_prepare_is_idempotent_and_the_cli_prints_the_folder(smol_llm_dir, capsys):
    assert smol_llm_dir == model_folder("smollm2")
    assert all((smol_llm_dir / f).is_file() for f in REQUIRED_FILES + (DONE_MARKER,))
    stamp = (smol_llm_dir / "model.safetensors").stat().st_mtime_ns
    assert prepare("smollm2") == smol_llm_dir
    assert main(["model", "prepare", "smollm2"]) == 0
    assert capsys.readouterr().out.strip() == str(smol_llm_dir)
    assert (smol_llm_dir / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    config = json.loads((smol_llm_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert "chat_template" in json.loads((smol_llm_dir / "tokenizer_config.json").read_text())


def test_generate_command_runs_the_engine_offline(smol_llm_dir, capsys):
    code = main(["generate", "The capital of France is", "--max-tokens", "3", "--json", "--max-model-len", "256"])
    captured = capsys.readouterr()
    assert code == 0
    [line] = captured.out.strip().splitlines()
    result = json.loads(line)
    assert "Paris" in result["text"] and len(result["token_ids"]) == 3 and result["finish_reason"] == "length"
    assert "offline in this process" in captured.err


def test_generate_command_reports_bad_input(smol_llm_dir, capsys):
    assert main(["generate", "hi", "--max-tokens", "0"]) == 2
    assert "max_tokens" in capsys.readouterr().err
