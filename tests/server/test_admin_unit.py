"""Admin token check, PATCH body validation, and the initial limits read from a runtime ConfigMap folder."""

import pytest

from shoal.engine.server.admin import Limits, check_bearer, parse_patch, read_initial_limits
from shoal.engine.server.errors import APIError

CAP = Limits(max_num_seqs=64, max_num_batched_tokens=4096)


def status(fn, *args) -> int:
    with pytest.raises(APIError) as info:
        fn(*args)
    return info.value.status


def test_bearer(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    check_bearer("Bearer s3cret", token)
    assert status(check_bearer, "Bearer wrong", token) == 401
    assert status(check_bearer, None, token) == 401
    assert status(check_bearer, "Basic s3cret", token) == 401
    assert status(check_bearer, "Bearer s3cret", None) == 401  # no token file: admin disabled
    token.write_text("rotated")
    assert status(check_bearer, "Bearer s3cret", token) == 401


def test_parse_patch():
    assert parse_patch({"maxNumSeqs": 8}, CAP, 16) == {"max_num_seqs": 8}
    assert parse_patch({"maxNumSeqs": 64, "maxNumBatchedTokens": 16}, CAP, 16) == {
        "max_num_seqs": 64, "max_num_batched_tokens": 16}
    assert status(parse_patch, {"maxNumSeqs": 65}, CAP, 16) == 422
    assert status(parse_patch, {"maxNumSeqs": 0}, CAP, 16) == 422
    assert status(parse_patch, {"maxNumBatchedTokens": 8}, CAP, 16) == 422
    assert status(parse_patch, {"maxNumSeqs": "8"}, CAP, 16) == 400
    assert status(parse_patch, {"maxNumSeqs": True}, CAP, 16) == 400
    assert status(parse_patch, {"max_num_seqs": 8}, CAP, 16) == 400
    assert status(parse_patch, {}, CAP, 16) == 400


def test_initial_limits_clipped(tmp_path):
    assert read_initial_limits(tmp_path, CAP, 16) == {}
    (tmp_path / "maxNumSeqs").write_text("1000\n")
    (tmp_path / "maxNumBatchedTokens").write_text("2048")
    assert read_initial_limits(tmp_path, CAP, 16) == {"max_num_seqs": 64, "max_num_batched_tokens": 2048}
    (tmp_path / "maxNumBatchedTokens").write_text("lots")
    (tmp_path / "maxNumSeqs").write_text("0")
    assert read_initial_limits(tmp_path, CAP, 16) == {"max_num_seqs": 1}
