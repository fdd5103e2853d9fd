"""Incremental detokenization and stop strings for one request."""

from __future__ import annotations

from shoal.engine.tokenizer import Tokenizer


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text without re-decoding everything each step.

    Decodes a small window of recent tokens and only emits text once it no longer ends
    in an incomplete UTF-8 sequence. Stop strings cut the text; text that might still
    become a stop string is held back from `visible_text` until the request finishes.
    """

    def __init__(self, tokenizer: Tokenizer | None, prompt_token_ids: list[int], stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.tokens: list[int] = list(prompt_token_ids[-6:])  # context so the first word decodes with its space
        self.prefix_offset = 0
        self.read_offset = len(self.tokens)
        self.text = ""

    def add(self, token_ids: list[int]) -> str | None:
        """Append generated tokens; returns the stop string hit (text is cut before it), else None."""
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
