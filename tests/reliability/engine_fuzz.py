"""Hostile requests for every route of `shoal serve` (hypothesis strategies) and the properties each reply must keep.

A case is one HTTP exchange: a valid request body with some fields replaced by hostile values (wrong types, huge and
negative numbers, NaN/Infinity, lone surrogates, NUL, right-to-left marks, emoji, multi-MB strings), a raw body
(malformed or deeply nested JSON, binary, form data), or an odd method on any route. `violations()` lists what a
reply got wrong: a 5xx, an error that is not OpenAI's error JSON, a field error that names no field or the wrong one,
a stream that carries an error or lacks [DONE].
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from engine_faults_harness import MODEL
from hypothesis import strategies as st

from shoal.engine.server.protocol import CHAT_FIELDS, COMPLETION_FIELDS

ADMIN_TOKEN = "fuzz-admin-token"
MAX_BODY = 16 * 1024 * 1024  # the server's client_max_size
HEADER_LIMIT = 8190  # aiohttp's max_field_size: longer header lines get its own plain-text 400
BASE = {
    "/v1/completions": {"model": MODEL, "prompt": "Hello", "max_tokens": 2},
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
}
FIELDS = {"/v1/completions": sorted(COMPLETION_FIELDS), "/v1/chat/completions": sorted(CHAT_FIELDS)}
GET_ROUTES = ("/v1/models", "/health", "/ready", "/metrics", "/admin/runtime-config")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
CONTENT_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "application/json; charset=latin-1", "")


@dataclass
class Case:
    method: str
    path: str
    body: bytes | None
    headers: dict
    field: str | None = None  # the one field made hostile in an otherwise valid body
    stream: bool = False

    def describe(self) -> str:
        body = (self.body or b"")[:160]
        return f"{self.method} {self.path} field={self.field} {len(self.body or b'')}B {body!r}"


# -- hostile values ------------------------------------------------------------------------------------------------
odd_chars = st.one_of(
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates: valid JSON escapes, invalid Unicode
    st.sampled_from(["\x00", "\u202e", "\u200f", "\ufeff", "\U0001f600", "\U0001f468\u200d\U0001f469", "\uffff",
                     "\U0010ffff", "\u0301", "\n", "\\", '"', "<|im_end|>", "{{", "{%"]),
    st.characters(),
)
odd_text = st.lists(odd_chars, max_size=40).map("".join)
giant_text = st.sampled_from([2_000, 200_000, 3_000_000]).map(lambda n: "word " * n)
numbers = st.one_of(
    st.sampled_from([0, 1, 2, -1, -2**31, 2**31, 2**53 + 1, 2**63, 2**64, -2**63 - 1, 10**300, -10**300]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
hostile = st.one_of(
    scalars, giant_text,
    st.lists(scalars, max_size=5), st.dictionaries(odd_text, scalars, max_size=4),
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=12),
    st.sampled_from([[{"role": "user", "content": None}], [{"role": "tool", "content": "x"}], [{}], [[]],
                     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
                     [{"role": "user", "content": "x", "tool_calls": []}], {"include_usage": "yes"},
                     {"include_usage": True, "extra": 1}, [-1], [0, 49151, 49152], [[1, 2], []]]),
)


def _dumps(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN and Infinity go out as bare literals


@st.composite
def generation_cases(draw) -> Case:
    """A valid completion or chat body, plain or streaming, with one or a few fields made hostile."""
    path = draw(st.sampled_from(sorted(BASE)))
    body = dict(BASE[path])
    stream = draw(st.booleans())
    if stream:
        body["stream"] = True
    names = FIELDS[path] + ["bogus", "", "\ud800", "prompt ", "Model"]
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    for name in picked:
        body[name] = draw(hostile)
    if draw(st.booleans()) and len(picked) == 1 and picked[0] in body and draw(st.booleans()):
        del body[picked[0]]  # a missing field
    content_type = draw(st.sampled_from(CONTENT_TYPES[:3]))
    return Case("POST", path, _dumps(body), {"Content-Type": content_type},
                field=picked[0] if len(picked) == 1 else None, stream=body.get("stream") is True)


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b"0", b'"x"', b"NaN", b"[NaN]", b"{", b'{"model":', b"\xff\xfe{}",
                     b'{"model": "a", "model": "b"}', b"\x00" * 100]),
    st.integers(1_000, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1_000, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([1_000_000, 8_000_000, 15_000_000, 17_000_000]).map(
        lambda n: b'{"model": "' + MODEL.encode() + b'", "prompt": "' + b"ab " * (n // 3) + b'"}'),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@st.composite
def raw_cases(draw) -> Case:
    path = draw(st.sampled_from(sorted(BASE) + ["/admin/runtime-config"]))
    method = "PATCH" if path.startswith("/admin") else "POST"
    return Case(method, path, draw(raw_bodies), {"Content-Type": draw(st.sampled_from(CONTENT_TYPES)),
                                                  "Authorization": f"Bearer {ADMIN_TOKEN}"})


@st.composite
def route_cases(draw) -> Case:
    """Any method on any route (and some that do not exist), admin with missing, wrong or right tokens."""
    path = draw(st.sampled_from(GET_ROUTES + tuple(BASE) + ("/", "/v1", "/v1/models/x", "/admin", "/%ff", "/x" * 50)))
    method = draw(st.sampled_from(METHODS))
    headers = {"Content-Type": "application/json"}
    token = draw(st.sampled_from([None, "", "wrong", ADMIN_TOKEN, ADMIN_TOKEN + "x", "\u00e9"]))
    if token is not None:
        headers["Authorization"] = draw(st.sampled_from(["Bearer ", "bearer ", "Basic ", ""])) + token
    body = None
    if method in ("POST", "PUT", "PATCH"):
        body = _dumps(draw(st.one_of(
            st.fixed_dictionaries({}, optional={"maxNumSeqs": hostile | st.integers(-2, 40),
                                                "maxNumBatchedTokens": hostile | st.integers(-2, 10_000)}),
            hostile)))
    return Case(method, path, body, {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()})


@st.composite
def admin_cases(draw) -> Case:
    """GET and PATCH /admin/runtime-config: tokens missing, wrong, odd or right; limits in and out of bounds."""
    method = draw(st.sampled_from(["GET", "PATCH", "PATCH"]))
    token = draw(st.sampled_from([ADMIN_TOKEN, ADMIN_TOKEN, "", "wrong", ADMIN_TOKEN[:-1], ADMIN_TOKEN + " x",
                                  "\u00e9" * 40, "x" * 10_000]))
    scheme = draw(st.sampled_from(["Bearer ", "Bearer ", "bearer  ", "Token ", ""]))
    headers = {"Content-Type": "application/json",
               "Authorization": (scheme + token).encode("utf-8").decode("latin-1")}
    body = None
    if method == "PATCH":
        body = _dumps(draw(st.one_of(
            st.fixed_dictionaries({}, optional={"maxNumSeqs": st.integers(-2, 12) | hostile,
                                                "maxNumBatchedTokens": st.integers(-2, 9000) | hostile,
                                                "bogus": hostile}),
            hostile)))
    return Case(method, "/admin/runtime-config", body, headers)


all_cases = st.one_of(generation_cases(), raw_cases(), route_cases(), admin_cases())


# -- properties ----------------------------------------------------------------------------------------------------
def param_root(param: str) -> str:
    return re.split(r"[.\[]", param, maxsplit=1)[0]


def violations(case: Case, status: int, headers: dict[str, str], body: bytes) -> list[str]:
    """What this reply does wrong (empty: it is fine)."""
    out = []
    if status >= 500:
        out.append(f"5xx: {status}")
    oversized = len(case.body or b"") > MAX_BODY
    if any(len(v) > HEADER_LIMIT for v in case.headers.values()):  # refused by aiohttp's parser, before any route
        return out + ([] if status in (0, 400) else [f"oversized header answered {status}, not 400"])
    if status == 0 and not oversized:  # closing on a body over the limit is fine; on anything else it is not
        return out + ["the server closed the connection with no answer"]
    if status >= 400 and case.method != "HEAD":
        try:
            error = json.loads(body)["error"]
            assert isinstance(error["message"], str) and error["message"]
            assert isinstance(error["type"], str) and "param" in error and "code" in error
        except (ValueError, KeyError, TypeError, AssertionError):
            return out + [f"{status} is not OpenAI error JSON: {body[:200]!r}"]
        if status == 429 and "retry-after" not in headers:
            out.append("429 without Retry-After")
        if case.field is not None and status in (400, 422) and case.path in BASE:
            if error["param"] is None or param_root(error["param"]) != case.field:
                out.append(f"error names param {error['param']!r}, the hostile field was {case.field!r}: "
                           f"{error['message'][:200]}")
        elif status in (400, 422) and case.path in BASE and _is_object(case.body) and error["param"] is None:
            out.append(f"field error names no param: {error['message'][:200]}")
    if status == 200 and case.stream and case.path in BASE:
        text = body.decode("utf-8", errors="replace")
        if '"error"' in text:
            out.append(f"stream carries an error: {text[:300]}")
        if not text.rstrip().endswith("data: [DONE]"):
            out.append(f"stream lacks [DONE]: {text[-200:]}")
    return out


def _is_object(body: bytes | None) -> bool:
    """A JSON object the server parses (it refuses nesting deeper than its stack allows, naming no field)."""
    if (body or b"").count(b"{") + (body or b"").count(b"[") > 500:
        return False
    try:
        return isinstance(json.loads(body or b""), dict)
    except (ValueError, RecursionError):
        return False


def named_cases() -> dict[str, Case]:
    """Hostile inputs worth naming: each was a 5xx, a crash or an unnamed error before the server was fixed."""
    comp, chat = "/v1/completions", "/v1/chat/completions"
    user = [{"role": "user", "content": "Hi"}]

    def body(path, field=None, stream=False, **fields):
        fields = {**BASE[path], **({"stream": True} if stream else {}), **fields}
        return Case("POST", path, _dumps(fields), {"Content-Type": "application/json"}, field=field, stream=stream)

    def raw(path, data: bytes):
        return Case("POST", path, data, {"Content-Type": "application/json"})

    return {
        "deep_array": raw(comp, b"[" * 100_000 + b"]" * 100_000),
        "deep_object": raw(chat, b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        "lone_surrogate_prompt": raw(comp, b'{"model": "%s", "prompt": "a\\ud800b"}' % MODEL.encode()),
        "lone_surrogate_content": raw(chat, b'{"model": "%s", "messages": [{"role": "user", "content": "\\udfff"}]}'
                                      % MODEL.encode()),
        "lone_surrogate_stop": body(comp, "stop", stop=["\ud800"]),
        "seed_over_64_bits": body(comp, "seed", seed=2**70, temperature=0.5),
        "seed_over_64_bits_stream": body(comp, "seed", stream=True, seed=2**70, temperature=0.5),
        "seed_below_64_bits": body(chat, "seed", seed=-2**70),
        "stop_token_ids_negative": body(comp, "stop_token_ids", stop_token_ids=[-5]),
        "stop_token_ids_huge": body(chat, "stop_token_ids", stop_token_ids=[2**80]),
        "empty_prompt": body(comp, "prompt", prompt=""),
        "role_object": body(chat, "messages", messages=[{"role": {"a": 1}, "content": "x"}]),
        "role_list": body(chat, "messages", messages=[{"role": ["user"], "content": "x"}]),
        "chat_too_long_with_max_tokens": body(chat, "messages", messages=[{"role": "user", "content": "hi " * 400}]),
        "prompt_15_mb": body(comp, "prompt", prompt="word " * 3_000_000),
        "too_many_prompts": body(comp, "prompt", prompt=["x"] * 10_000),
        "body_over_16_mb": raw(comp, b'{"prompt": "' + b"a" * (MAX_BODY + 10) + b'"}'),
        "nan_temperature": raw(comp, b'{"model": "%s", "prompt": "x", "temperature": NaN}' % MODEL.encode()),
        "infinity_max_tokens": raw(chat, b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], '
                                   b'"max_tokens": Infinity}' % MODEL.encode()),
        "int_of_5000_digits": raw(comp, b'{"model": "%s", "prompt": "x", "max_tokens": 1%s}'
                                  % (MODEL.encode(), b"0" * 5000)),
        "nul_rtl_emoji": body(comp, prompt="a\x00b\u202e\U0001f600", max_tokens=2),
        "max_completion_tokens_over_context": body(comp, "max_completion_tokens", max_completion_tokens=8420257),
        "chat_max_completion_tokens_over_context": body(chat, "max_completion_tokens", max_completion_tokens=10**6),
        "include_usage_not_bool": body(chat, "stream_options", stream=True, messages=user,
                                       stream_options={"include_usage": "yes"}),
    }
