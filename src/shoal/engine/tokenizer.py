"""Tokenizer wrapper: the `tokenizers` library for text, jinja2 for the chat template."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders

log = logging.getLogger(__name__)


class Tokenizer:
    def __init__(self, model_dir: str | Path, eos_token_ids: tuple[int, ...] = ()) -> None:
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the model folder needs tokenizer.json")
        self._tok = _HFTokenizer.from_file(str(path))
        cfg_path = model_dir / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        eos_id = self._tok.token_to_id(self.eos_token) if self.eos_token else None
        self.eos_token_ids = tuple(dict.fromkeys(((eos_id,) if eos_id is not None else ()) + tuple(eos_token_ids)))
        self.eos_token_id = self.eos_token_ids[0] if self.eos_token_ids else None
        self.model_max_length = int(min(cfg.get("model_max_length", 10**9), 10**9))
        template = cfg.get("chat_template")
        jinja_path = model_dir / "chat_template.jinja"
        if template is None and jinja_path.is_file():
            template = jinja_path.read_text()
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), template[0]["template"])
        self.chat_template: str | None = template
        self._compiled = None

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        # A chat-templated prompt already starts with BOS: don't add a second one.
        add_special = not (self.bos_token and text.startswith(self.bos_token))
        return self._tok.encode(text, add_special_tokens=add_special).ids

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(token_ids, skip_special_tokens=skip_special_tokens)

    @cached_property
    def byte_table(self) -> list[bytes] | None:
        """Token id -> its bytes, for `decode(ids)` (special tokens skipped) of a pure byte-level BPE tokenizer.

        Then decode(ids) == b"".join(table[i] for i in ids).decode("utf-8", "replace") for ids in
        range(len(table)); None where the decoder is anything else, and callers use `decode`.
        """
        return byte_level_table(self._tok)

    @cached_property
    def whole_token_texts(self) -> list[str | None] | None:
        """Per id of `byte_table`, its text where its bytes are whole characters (valid UTF-8, no U+FFFD), else None.

        Such a token decodes alone: after any valid UTF-8, its text is what decoding both adds.
        """
        if self.byte_table is None:
            return None
        return [_whole_text(b) for b in self.byte_table]

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise ValueError("this model has no chat template (tokenizer_config.json has no chat_template)")
        if self._compiled is None:
            self._compiled = _compile(self.chat_template)
        return self._compiled.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )


def byte_level_table(tok: _HFTokenizer) -> list[bytes] | None:
    """The bytes each id decodes to under a lone ByteLevel decoder, checked against the library; else None."""
    if type(tok.decoder) is not decoders.ByteLevel:
        log.debug("byte table: decoder is %s, not ByteLevel; detokenizing with the library decode",
                  type(tok.decoder).__name__)
        return None
    to_byte = {c: b for b, c in _byte_alphabet().items()}
    added = tok.get_added_tokens_decoder()
    special = {t.content for t in added.values() if t.special}
    size = max(tok.get_vocab_size(), *(i + 1 for i in added))
    table = [_token_bytes(tok.id_to_token(i), special, to_byte) for i in range(size)]
    # A guard against library behaviour this model of it misses: the whole vocabulary, one call and token by token.
    ids = list(range(size))
    whole = tok.decode(ids, skip_special_tokens=True) == b"".join(table).decode("utf-8", "replace")
    if not whole or tok.decode_batch([[i] for i in ids]) != [b.decode("utf-8", "replace") for b in table]:
        log.debug("byte table: differs from the library decode; detokenizing with the library decode")
        return None
    return table


def _token_bytes(token: str | None, special: set[str], to_byte: dict[str, int]) -> bytes:
    if token is None or token in special:  # decode(skip_special_tokens=True) drops both
        return b""
    try:
        return bytes([to_byte[c] for c in token])
    except KeyError:  # the ByteLevel decoder keeps a token with a character outside its alphabet as UTF-8
        return token.encode()


def _whole_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and "\ufffd" not in text else None


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map: printable Latin-1 bytes stand for themselves, the rest map to 256+."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in kept]
    return {**{b: chr(b) for b in kept}, **{b: chr(256 + n) for n, b in enumerate(shifted)}}


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # older configs store AddedToken dicts
        return value.get("content")
    return value


def _compile(template: str):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(
        x, indent=indent, ensure_ascii=ensure_ascii
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
