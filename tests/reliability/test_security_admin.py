"""The engine's admin endpoint: missing, wrong and malformed tokens get 401; the comparison is constant-time
(hmac.compare_digest, checked in the source); and a real `shoal serve` at DEBUG never writes the token -- right or
wrong -- anywhere in its log."""

from __future__ import annotations

import ast
import inspect

import pytest
from security_harness import crash_lines, flip, new_token, probe_serve_log, wrong_headers

from shoal.engine.server import admin
from shoal.engine.server.errors import APIError

TOKEN = new_token()
WRONG = wrong_headers(TOKEN)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_the_right_token_passes(token_file):
    admin.check_bearer(f"Bearer {TOKEN}", token_file)
    admin.check_bearer(f"bearer {TOKEN}", token_file)  # the scheme is case-insensitive (RFC 7235)


@pytest.mark.parametrize("header", WRONG.values(), ids=WRONG.keys())
def test_missing_wrong_and_malformed_tokens_get_401(token_file, header):
    with pytest.raises(APIError) as info:
        admin.check_bearer(header, token_file)
    assert info.value.status == 401
    assert TOKEN[:8] not in str(info.value.message)  # the answer never echoes what was sent


def test_an_empty_token_file_admits_nobody(tmp_path):
    (tmp_path / "token").write_text("\n")
    for header in ("Bearer ", "Bearer x", "Bearer \n"):
        with pytest.raises(APIError) as info:
            admin.check_bearer(header, tmp_path / "token")
        assert info.value.status == 401


def test_comparison_is_hmac_compare_digest_in_the_source():
    tree = ast.parse(inspect.getsource(admin))
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}

    def calls(fn) -> set[str]:
        return {ast.unparse(c.func) for c in ast.walk(fn) if isinstance(c, ast.Call)}

    assert "hmac.compare_digest" in calls(functions["token_matches"])
    assert "token_matches" in calls(functions["check_bearer"])
    # no ==, !=, `in` or startswith between the given and the expected token anywhere (an early exit leaks
    # how many leading characters matched)
    secret_names = {"given", "expected"}
    for fn in (functions["check_bearer"], functions["token_matches"]):
        for node in ast.walk(fn):
            if isinstance(node, ast.Compare):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                assert not (names >= secret_names), ast.unparse(node)
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("startswith", "endswith", "find")):
                assert not ({n.id for n in ast.walk(node) if isinstance(n, ast.Name)} >= secret_names)


def test_equal_length_tokens_differing_anywhere_are_refused():
    for i in range(len(TOKEN)):
        assert not admin.token_matches(flip(TOKEN, i), TOKEN)
    assert admin.token_matches(TOKEN, TOKEN)


def test_redaction_of_tokens_in_log_text():
    quoted = f"Got more than 8190 bytes when reading: b'Bearer {TOKEN}Bearer {TOKEN}...'."
    assert TOKEN not in admin.redact(quoted) and "Bearer <redacted>" in admin.redact(quoted)
    for text in (f"Authorization: Bearer {TOKEN}", f"{{'Authorization': '{TOKEN}'}}", f"bearer\t{TOKEN}"):
        assert TOKEN not in admin.redact(text), text
    assert admin.redact("runtime limits now max_num_seqs=4") == "runtime limits now max_num_seqs=4"


def test_a_real_server_at_debug_never_logs_the_token(tmp_path):
    probe = probe_serve_log(tmp_path)
    assert probe.statuses == {"right GET": 200, "right PATCH": 200, "wrong": 401, "missing": 401, "near miss": 401,
                              "undecodable": 401, "oversized": probe.statuses["oversized"],
                              "token on another route": 200}
    assert 400 <= probe.statuses["oversized"] < 500  # the HTTP parser's own limit on a header line, before any handler
    assert probe.exit_code == 0
    text = probe.log
    assert "DEBUG shoal.engine.server.admin: admin request refused: wrong token" in text  # the log is at DEBUG
    assert "listening on" in text and "Bearer <redacted>" in text  # the parser's refusal, its quote redacted
    assert probe.leaks() == [], "a token reached the log"
    # asyncio debug mode makes aiohttp log the parser's refusal with its traceback; nothing else may fail
    assert [line for line in crash_lines(text) if "Error handling request" not in line and "Traceback" not in line] == []


def test_the_operator_puts_the_token_only_in_the_authorization_header():
    """The operator reads each service's token to PATCH its pods: no log call, Event or status write may carry it."""
    from shoal.operator import autoscaler

    tree = ast.parse(inspect.getsource(autoscaler))
    sinks = ("log.", "logging.", "print", "_event", "client.patch", "client.post_event")
    carriers = {"token", "headers", "secret"}
    checked = 0
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        if ast.unparse(call.func).startswith(sinks):
            checked += 1
            names = {n.id for arg in [*call.args, *(k.value for k in call.keywords)] for n in ast.walk(arg)
                     if isinstance(n, ast.Name)}
            assert not names & carriers, ast.unparse(call)
    assert checked >= 8  # the scan found the log calls, Events and patches
    formatted = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)
                 and any(isinstance(v, ast.Name) and v.id == "token" for v in ast.walk(n))]
    assert formatted == ["f'Bearer {token}'"], formatted  # the one place the token is put into text
