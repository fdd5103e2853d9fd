"""Typed readers for fields of a JSON request body; each error names the field.

Wrong JSON type -> 400; right type, value out of range -> 422 (see errors.py).
"""

from __future__ import annotations

import math
from typing import Any

from shoal.engine.server.errors import bad_request, unprocessable

_MISSING = object()
# seeds reach torch.Generator.manual_seed, which takes a 64-bit integer
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
# token ids checked without a vocabulary (stop_token_ids) still fit an int32 id
MAX_TOKEN_ID = 2**31 - 1


def reject_unknown(body: dict, allowed: frozenset[str]) -> None:
    for name in body:
        if name not in allowed:
            raise bad_request(f"Unrecognized request argument supplied: {name}", name)


def required(body: dict, name: str) -> Any:
    if body.get(name) is None:
        raise bad_request(f"`{name}` is required.", name)
    return body[name]


def boolean(body: dict, name: str, default: bool, param: str | None = None) -> bool:
    """`param`: the field's full name when `body` is nested (e.g. `stream_options.include_usage`)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        param = param or name
        raise bad_request(f"`{param}` must be a boolean, got {type(value).__name__}.", param)
    return value


def integer(body: dict, name: str, default: int | None, lo: int | None = None, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"`{name}` must be an integer, got {type(value).__name__}.", name)
    _check_range(name, value, lo, hi)
    return value


def number(body: dict, name: str, default: float, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"`{name}` must be a finite number, got {value!r}.", name)
    if lo_open and lo is not None and value <= lo:
        raise unprocessable(f"`{name}` must be > {lo}, got {value}.", name)
    _check_range(name, value, lo, hi)
    return float(value)


def string(body: dict, name: str, default: str | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request(f"`{name}` must be a string, got {type(value).__name__}.", name)
    return text(value, name)


def text(value: str, name: str) -> str:
    """A string that is valid Unicode: JSON can carry lone surrogates (\\ud800), which no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start:exc.end].encode("unicode_escape").decode()
        raise bad_request(f"`{name}` holds a lone surrogate ({bad}) at character {exc.start}; send valid "
                          "UTF-8 text (pair surrogates or drop them).", name) from exc
    return value


def stop_strings(body: dict, name: str = "stop", max_items: int = 16) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise bad_request(f"`{name}` must be a string or a list of strings.", name)
    if len(value) > max_items:
        raise unprocessable(f"`{name}` takes at most {max_items} strings, got {len(value)}.", name)
    if any(s == "" for s in value):
        raise unprocessable(f"`{name}` must not contain empty strings.", name)
    return [text(s, name) for s in value]


def token_ids(value: Any, name: str, vocab_size: int | None) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise bad_request(f"`{name}` must be a list of integer token ids.", name)
    hi = MAX_TOKEN_ID + 1 if vocab_size is None else vocab_size
    for t in value:
        if not 0 <= t < hi:
            where = "the vocabulary" if vocab_size is not None else "the token id range"
            raise unprocessable(f"`{name}` holds token id {t}, outside {where} [0, {hi}).", name)
    return value


def only_default(body: dict, name: str, allowed: tuple, feature: str) -> None:
    """Fields OpenAI defines but this server does not implement: accept only their neutral values."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None or any(value == a and type(value) is type(a) for a in allowed):
        return
    raise bad_request(f"`{name}`={value!r} is not supported by this server ({feature}); omit it.", name)


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise unprocessable(f"`{name}` must be >= {lo}, got {value}.", name)
    if hi is not None and value > hi:
        raise unprocessable(f"`{name}` must be <= {hi}, got {value}.", name)
