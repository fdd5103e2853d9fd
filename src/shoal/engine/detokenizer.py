"""Incremental detokenization and stop strings for one request."""

from __future__ import annotations

from shoal.engine.tokenizer import Tokenizer


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text without re-decoding everything each step.

    Decodes a small window of recent tokens and only emits text once it no longer ends
    in an incomplete UTF-8 sequence. Stop strings cut the text; text that might still
    become a stop string is held back from `visible_text` until the request finishes.

    With a byte-level tokenizer (`Tokenizer.byte_table`) the window is kept as bytes, so a
    token costs one table lookup and one UTF-8 decode instead of two library decodes; the
    text is the same. `reference=True` forces the library decode (tests compare the two).
    """

    def __init__(
        self, tokenizer: Tokenizer | None, prompt_token_ids: list[int], stop: list[str], reference: bool = False
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.tokens: list[int] = list(prompt_token_ids[-6:])  # context so the first word decodes with its space
        self.prefix_offset = 0
        self.read_offset = len(self.tokens)
        self.text = ""
        self._table = None if reference else getattr(tokenizer, "byte_table", None)  # any object with `decode` works
        if self._table is not None:
            self._texts = tokenizer.whole_token_texts
            window = b"".join(map(self._bytes, self.tokens))
            self._keep_prefix(window, window.decode("utf-8", "replace"))

    def add(self, token_ids: list[int]) -> str | None:
        """Append generated tokens; returns the stop string hit (text is cut before it), else None."""
        if self._table is None or not token_ids:
            return self._add_decoding(token_ids)
        start = len(self.text)
        self.tokens.extend(token_ids)
        texts, t = self._texts, token_ids[0]
        if not self._window and len(token_ids) == 1 and 0 <= t < len(texts) and texts[t] is not None:
            # The common case: whole characters after whole characters are emitted as they are, nothing is kept.
            self.text += texts[t]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.tokens)
        else:
            self._add_bytes(token_ids)
        return self._check_stop(start) if self.stop else None

    def _add_bytes(self, token_ids: list[int]) -> None:
        """The window step on bytes: what `_add_decoding` does, with the table for the library decode."""
        table, window = self._table, self._window
        for t in token_ids:
            window += table[t] if 0 <= t < len(table) else self._bytes(t)
        full = window.decode("utf-8", "replace")
        if len(full) > self._prefix_chars and full[-1] != "\ufffd":
            new = full[self._prefix_chars :]
            self.text += new
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.tokens)
            if self._prefix_nbytes:  # the old prefix may end mid-character: decode the new prefix alone
                window = window[self._prefix_nbytes :]
                new = window.decode("utf-8", "replace")
            self._keep_prefix(window, new)
        else:
            self._window = window

    def _keep_prefix(self, window: bytes, text: str) -> None:
        """The window is now all prefix (tokens[prefix_offset:read_offset]), and `text` its decode.

        Valid UTF-8 decodes apart from whatever follows it, so such a prefix is dropped: the window
        then holds tokens[read_offset:] only, and their whole decode is the new text. Bytes that
        may be invalid (the text has a U+FFFD) are kept, with the length of their decode.
        """
        if "\ufffd" in text:
            self._window, self._prefix_nbytes, self._prefix_chars = window, len(window), len(text)
        else:
            self._window, self._prefix_nbytes, self._prefix_chars = b"", 0, 0

    def _add_decoding(self, token_ids: list[int]) -> str | None:
        """`add` with two library decodes per call: any tokenizer."""
        if self.tokenizer is None or not token_ids:
            return None
        start = len(self.text)
        self.tokens.extend(token_ids)
        prefix = self.tokenizer.decode(self.tokens[self.prefix_offset : self.read_offset])
        full = self.tokenizer.decode(self.tokens[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.tokens)
        return self._check_stop(start)

    def _bytes(self, token_id: int) -> bytes:
        if 0 <= token_id < len(self._table):
            return self._table[token_id]
        return self.tokenizer.decode([token_id]).encode()  # beyond the vocabulary: what the library does ("" or raise)

    def _check_stop(self, start: int) -> str | None:
        if not self.stop:
            return None
        search_from = max(0, start - self.hold)
        best: tuple[int, str] | None = None
        for s in self.stop:
            idx = self.text.find(s, search_from)
            if idx != -1 and (best is None or idx < best[0]):
                best = (idx, s)
        if best is None:
            return None
        self.text = self.text[: best[0]]
        return best[1]

    def visible_text(self, finished: bool) -> str:
        if finished or not self.hold:
            return self.text
        return self.text[: max(0, len(self.text) - self.hold)]
