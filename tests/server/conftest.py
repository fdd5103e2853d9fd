"""Fixtures: the real SmolLM2 model, a tiny random-weight model with its tokenizer, one shared `shoal serve` child
process of the tiny model, clients (helpers: serverkit.py). Tests whose point is the real model's tokens start
their own real-model server (test_real_model.py)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from serverkit import ADMIN_TOKEN, MAX_NUM_SEQS, TINY, build_tiny_model, serving


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from shoal.engine.model_prepare import prepare

    return prepare("smollm2")


@pytest.fixture(scope="session")
def tiny_model_dir(model_dir, tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", model_dir)


@pytest.fixture(scope="session")
def admin_token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("admin") / "token"
    path.write_text(ADMIN_TOKEN + "\n")
    return path


@pytest.fixture(scope="session")
def server(tiny_model_dir, admin_token_file):
    with serving(tiny_model_dir, "--served-model-name", TINY, "--max-num-seqs", str(MAX_NUM_SEQS),
                 "--admin-token-file", str(admin_token_file)) as proc:
        yield proc


@pytest.fixture(scope="session")
def tiny_llm(tiny_model_dir):
    from shoal.engine import LLM

    return LLM(str(tiny_model_dir), max_num_seqs=MAX_NUM_SEQS)


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(server):
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
