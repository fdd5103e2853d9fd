"""Admin side of the server: bearer-token check, runtime-config bodies, the initial limits from a ConfigMap dir.

Runtime limits use the API's spelling (`maxNumSeqs`, `maxNumBatchedTokens`) on the wire and in the ConfigMap.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from shoal.engine.server.errors import APIError, bad_request, unauthorized, unprocessable

log = logging.getLogger(__name__)

WIRE_FIELDS = {"maxNumSeqs": "max_num_seqs", "maxNumBatchedTokens": "max_num_batched_tokens"}


@dataclass(frozen=True)
class Limits:
    max_num_seqs: int
    max_num_batched_tokens: int


def check_bearer(header: str | None, token_file: Path | None) -> None:
    """Raise 401 unless the Authorization header carries the token in token_file (re-read: Secrets rotate)."""
    if token_file is None:
        raise unauthorized("Admin routes are disabled: start the server with --admin-token-file.")
    try:
        expected = token_file.read_text().strip()
    except OSError as exc:
        raise APIError(500, f"Cannot read the admin token file {token_file}: {exc}", type="server_error") from exc
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        log.debug("admin request refused: no admin token sent")
        raise unauthorized("Send `Authorization: Bearer <admin token>`.")
    if not expected or not token_matches(given.strip(), expected):
        log.debug("admin request refused: wrong token")  # never what was sent: it may be a near-miss
        raise unauthorized("The admin token is wrong.")
    log.debug("admin request authorized")


def token_matches(given: str, expected: str) -> bool:
    """Constant time (hmac.compare_digest): the time taken says nothing of how many leading characters matched.

    Any text compares, including the lone surrogates a server's header decoding makes of undecodable bytes."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


# "Bearer <token>" or "Authorization: <token>" in any log text, up to a quote or the line's end (HTTP parsers
# quote a header line they refuse)
_SECRET_IN_TEXT = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?|bearer\s+)[^'\"\r\n]+")


def redact(text: str) -> str:
    return _SECRET_IN_TEXT.sub(r"\1<redacted>", text)


class RedactTokens(logging.Filter):
    """Strips bearer tokens from a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if redact(message) != message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact_tokens_in_logs() -> None:
    """Install RedactTokens on the root handlers and on aiohttp's loggers (whose records reach the lastResort
    handler when logging is not configured). aiohttp's parser quotes an oversized Authorization line in its
    error log, token included."""
    for target in [*logging.getLogger().handlers, *(logging.getLogger(f"aiohttp.{n}")
                                                    for n in ("server", "access", "web", "internal", "client"))]:
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())


def parse_patch(body: object, capacity: Limits, block_size: int) -> dict[str, int]:
    """PATCH body -> set_runtime_limits kwargs; 400 for shape errors, 422 outside [1, capacity]."""
    if not isinstance(body, dict) or not body:
        raise bad_request("Send a JSON object with `maxNumSeqs` and/or `maxNumBatchedTokens`.")
    out = {}
    for key, value in body.items():
        if key not in WIRE_FIELDS:
            raise bad_request(f"Unknown field `{key}`; runtime config has {sorted(WIRE_FIELDS)}.", key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"`{key}` must be an integer, got {value!r}.", key)
        attr = WIRE_FIELDS[key]
        lo = block_size if attr == "max_num_batched_tokens" else 1
        hi = getattr(capacity, attr)
        if not lo <= value <= hi:
            raise unprocessable(f"`{key}`={value} is outside [{lo}, {hi}] (the startup capacity); "
                                "restart with a larger engine capacity to go higher.", key)
        out[attr] = value
    return out


def config_body(limits, capacity) -> dict:
    return {
        "maxNumSeqs": limits.max_num_seqs,
        "maxNumBatchedTokens": limits.max_num_batched_tokens,
        "capacity": {"maxNumSeqs": capacity.max_num_seqs, "maxNumBatchedTokens": capacity.max_num_batched_tokens},
    }


def read_initial_limits(config_dir: Path, capacity: Limits, block_size: int) -> dict[str, int]:
    """set_runtime_limits kwargs from a mounted `<name>-runtime` ConfigMap, clipped to capacity.

    A missing file leaves that limit at capacity; an unreadable value is logged and ignored so a bad ConfigMap
    degrades to the startup limits rather than a crash loop.
    """
    out = {}
    for key, attr in WIRE_FIELDS.items():
        path = config_dir / key
        if not path.is_file():
            continue
        text = path.read_text().strip()
        try:
            value = int(text)
        except ValueError:
            log.warning("ignoring %s: %r is not an integer", path, text)
            continue
        lo = block_size if attr == "max_num_batched_tokens" else 1
        clipped = min(max(value, lo), getattr(capacity, attr))
        if clipped != value:
            log.warning("%s=%d clipped to %d (startup capacity %d)", key, value, clipped, getattr(capacity, attr))
        out[attr] = clipped
    return out
