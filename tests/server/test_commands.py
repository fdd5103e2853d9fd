"""`shoal serve` flags: defaults, SHOAL_* environment values, flag beats environment, bad values refused."""

import argparse
from pathlib import Path

import pytest

from shoal.engine.server.commands import FLAGS, add_flags, env_name, settings_from_args


def parse(argv, environ):
    parser = argparse.ArgumentParser()
    add_flags(parser, environ)
    return parser.parse_args(argv)


def test_every_interface_flag_exists():
    names = {flag for flag, *_ in FLAGS}
    assert names >= {"--model", "--host", "--port", "--device", "--dtype", "--max-num-seqs",
                     "--max-num-batched-tokens", "--max-model-len", "--kv-cache-tokens", "--block-size",
                     "--served-model-name", "--admin-token-file", "--runtime-config-dir", "--drain-timeout",
                     "--max-waiting"}
    assert env_name("--max-num-seqs") == "SHOAL_MAX_NUM_SEQS"


def test_env_then_flag():
    args = parse([], {"SHOAL_MODEL": "/m/smol", "SHOAL_MAX_NUM_SEQS": "12", "SHOAL_DRAIN_TIMEOUT": "2.5",
                      "SHOAL_ENABLE_PREFIX_CACHING": "false"})
    s = settings_from_args(args)
    assert (s.model, s.max_num_seqs, s.drain_timeout, s.enable_prefix_caching) == (Path("/m/smol"), 12, 2.5, False)
    assert s.model_name == "smol" and s.port == 8000
    args = parse(["--max-num-seqs", "3", "--served-model-name", "chat"], {"SHOAL_MODEL": "/m", "SHOAL_MAX_NUM_SEQS": "12"})
    s = settings_from_args(args)
    assert s.max_num_seqs == 3 and s.model_name == "chat"
    assert s.engine_kwargs()["max_num_seqs"] == 3


def test_bad_values_refused():
    with pytest.raises(SystemExit):
        parse([], {"SHOAL_PORT": "eighty"})
    with pytest.raises(SystemExit):
        settings_from_args(parse([], {}))  # no model
    with pytest.raises(ValueError, match="port"):
        settings_from_args(parse(["--model", "m", "--port", "70000"], {}))
    with pytest.raises(ValueError, match="max_waiting"):
        settings_from_args(parse(["--model", "m", "--max-waiting", "-1"], {}))
