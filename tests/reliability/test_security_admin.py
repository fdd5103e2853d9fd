"""The engine's admin endpoint: missing, wrong and malformed tokens get 401; the comparison is constant-time
(hmac.compare_digest, checked in the source); and a real `shoal serve` at DEBUG never writes the token -- right or
wrong -- anywhere in its log."""

from __future__ import annotations

import ast
import inspect
import socket
import sys

import pytest
from security_harness import REPO, new_token

from shoal.engine.server import admin
from shoal.engine.server.errors import APIError

sys.path.insert(0, str(REPO / "tests" / "server"))
from serverkit import build_tiny_model, crash_lines  # noqa: E402

TOKEN = new_token()


def flip(token: str, index: int) -> str:
    """The token with one character changed: same length, differs only at `index`."""
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]


WRONG = {
    "missing": None, "empty": "", "scheme only": "Bearer", "scheme and space": "Bearer ",
    "other scheme": f"Basic {TOKEN}", "no scheme": TOKEN, "wrong, same length (first char)": f"Bearer {flip(TOKEN, 0)}",
    "wrong, same length (middle)": f"Bearer {flip(TOKEN, len(TOKEN) // 2)}",
    "wrong, same length (last char)": f"Bearer {flip(TOKEN, len(TOKEN) - 1)}",
    "prefix": f"Bearer {TOKEN[:-1]}", "suffix added": f"Bearer {TOKEN}x", "doubled": f"Bearer {TOKEN}{TOKEN}",
    "inner space": f"Bearer {TOKEN[:5]} {TOKEN[5:]}", "NUL": f"Bearer {TOKEN}\x00", "non-ASCII": "Bearer tökén",
    "undecodable byte (surrogate)": f"Bearer {TOKEN[:-1]}\udcff", "lone surrogate": "Bearer \ud800",
    "emoji": "Bearer \U0001f511", "1 MB": "Bearer " + "a" * 1_000_000, "two schemes": f"Bearer Bearer {TOKEN}",
}


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


def raw_request(url: str, method: str, path: str, header_bytes: bytes | None, body: bytes = b"") -> int:
    """One HTTP/1.1 request written byte for byte (so malformed headers reach the server as sent); the status."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}".encode(), b"Connection: close",
             b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    if header_bytes is not None:
        lines.append(b"Authorization: " + header_bytes)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_real_server_at_debug_never_logs_the_token(tmp_path):
    from shoal.engine.model_prepare import prepare
    from shoal.engine.server.launcher import ServerProcess

    model = build_tiny_model(tmp_path / "tiny", prepare("smollm2"))
    token, wrong = new_token(), new_token()
    (tmp_path / "token").write_text(token + "\n")
    log = tmp_path / "serve.log"
    server = ServerProcess(["--model", str(model), "--host", "127.0.0.1", "--port", "0", "--log-level", "debug",
                            "--admin-token-file", str(tmp_path / "token"), "--max-num-seqs", "8"],
                           log_path=log, env={"PYTHONASYNCIODEBUG": "1"}).start()
    statuses = {}
    try:
        body = b'{"maxNumSeqs": 4}'
        statuses["right GET"] = raw_request(server.url, "GET", "/admin/runtime-config", f"Bearer {token}".encode())
        statuses["right PATCH"] = raw_request(server.url, "PATCH", "/admin/runtime-config",
                                              f"Bearer {token}".encode(), body)
        statuses["wrong"] = raw_request(server.url, "PATCH", "/admin/runtime-config", f"Bearer {wrong}".encode(), body)
        statuses["missing"] = raw_request(server.url, "PATCH", "/admin/runtime-config", None, body)
        statuses["near miss"] = raw_request(server.url, "PATCH", "/admin/runtime-config",
                                            f"Bearer {flip(token, 3)}".encode(), body)
        statuses["undecodable"] = raw_request(server.url, "PATCH", "/admin/runtime-config",
                                              f"Bearer {wrong}".encode() + b"\xff\xfe", body)
        statuses["oversized"] = raw_request(server.url, "PATCH", "/admin/runtime-config",
                                            f"Bearer {wrong}".encode() * 1000, body)
        statuses["token on another route"] = raw_request(server.url, "GET", "/v1/models", f"Bearer {token}".encode())
    finally:
        server.terminate()
        assert server.wait(60) == 0
    text = log.read_text(errors="replace")
    assert statuses == {"right GET": 200, "right PATCH": 200, "wrong": 401, "missing": 401, "near miss": 401,
                        "undecodable": 401, "oversized": statuses["oversized"], "token on another route": 200}
    assert 400 <= statuses["oversized"] < 500  # the HTTP parser's own limit on a header line, before any handler
    assert "DEBUG shoal.engine.server.admin: admin request refused: wrong token" in text  # the log is at DEBUG
    assert "listening on" in text and "Bearer <redacted>" in text  # the parser's refusal, its quote redacted
    for secret in (token, wrong, flip(token, 3), token[:16], wrong[:16]):
        assert secret not in text, "a token reached the log"
    # asyncio debug mode makes aiohttp log the parser's refusal with its traceback; nothing else may fail
    assert [line for line in crash_lines(text) if "Error handling request" not in line and "Traceback" not in line] == []
