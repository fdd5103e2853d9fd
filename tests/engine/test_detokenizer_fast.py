"""The byte-table detokenizer says exactly what the library-decode one says, token by token.

On the real SmolLM2 tokenizer: the table's decode equals `tokenizers`' decode over the whole
vocabulary (special tokens, partial UTF-8 bytes, ids past the vocabulary), and the fast
IncrementalDetokenizer gives the same `add()` results, text, offsets and visible text as the
reference one. A tokenizer that is not byte-level takes the library path.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from shoal.engine.detokenizer import IncrementalDetokenizer
from shoal.engine.model_prepare import prepare
from shoal.engine.tokenizer import Tokenizer, byte_level_table

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MULTILINGUAL = ["héllo wörld", "日本語のテキスト", "emoji 🎉🚀 end", "Ελληνικά", " tab\tand\nnewline", "a\ufffdb"]


@pytest.fixture(scope="module")
def smollm2() -> Tokenizer:
    return Tokenizer(prepare("smollm2"))


@pytest.fixture(scope="module")
def pools(smollm2) -> dict[str, list[int]]:
    """SmolLM2's ids by kind, found with the library (not the table under test)."""
    tok, size = smollm2, smollm2.vocab_size
    singles = tok._tok.decode_batch([[i] for i in range(size)])
    return {
        "special": sorted(i for i, t in tok._tok.get_added_tokens_decoder().items() if t.special),
        "partial": [i for i, text in enumerate(singles) if "\ufffd" in text],  # bytes that are not whole characters
        "beyond": list(range(size, size + 40)),  # a model's embedding may be larger than the tokenizer's vocabulary
    }


def ids_strategy(pools: dict[str, list[int]], beyond: bool) -> st.SearchStrategy[int]:
    kinds = [st.integers(0, pools["beyond"][0] - 1), st.sampled_from(pools["special"]), st.sampled_from(pools["partial"])]
    return st.one_of(*kinds, *([st.sampled_from(pools["beyond"])] if beyond else []))


def test_smollm2_takes_the_table(smollm2):
    table = smollm2.byte_table
    assert table is not None and len(table) == smollm2.vocab_size
    assert IncrementalDetokenizer(smollm2, [1, 2], [])._table is table
    assert IncrementalDetokenizer(smollm2, [1, 2], [], reference=True)._table is None


def test_table_decodes_every_token_as_the_library(smollm2, pools):
    table, size = smollm2.byte_table, smollm2.vocab_size
    library = smollm2._tok.decode_batch([[i] for i in range(size)])
    assert [b.decode("utf-8", "replace") for b in table] == library
    assert sum(b == b"" for b in table) >= len(pools["special"])  # special tokens decode to nothing


@pytest.fixture(scope="module")
def smollm2_ids(pools):
    return ids_strategy(pools, beyond=False)


@SETTINGS
@given(data=st.data())
def test_table_decode_equals_library(smollm2, smollm2_ids, data):
    ids = data.draw(st.lists(smollm2_ids, max_size=24))
    table = smollm2.byte_table
    assert b"".join(table[i] for i in ids).decode("utf-8", "replace") == smollm2.decode(ids)


def generated(tok: Tokenizer, any_id: st.SearchStrategy[int]) -> st.SearchStrategy[list[int]]:
    """Random ids, or the ids of real text (multi-byte characters split across tokens)."""
    text = st.one_of(st.text(max_size=40), st.sampled_from(MULTILINGUAL))
    return st.one_of(st.lists(any_id, max_size=40), text.map(lambda s: tok._tok.encode(s).ids))


def compare_token_by_token(tok: Tokenizer, prompt: list[int], ids: list[int], chunks: list[int], stop: list[str]):
    fast = IncrementalDetokenizer(tok, prompt, stop)
    ref = IncrementalDetokenizer(tok, prompt, stop, reference=True)
    assert fast._table is not None and ref._table is None
    pos = 0
    for size in chunks:
        piece, pos = ids[pos : pos + size], pos + size
        assert fast.add(piece) == ref.add(piece)
        assert (fast.text, fast.prefix_offset, fast.read_offset) == (ref.text, ref.prefix_offset, ref.read_offset)
        assert fast.visible_text(False) == ref.visible_text(False)
    assert fast.visible_text(True) == ref.visible_text(True)
    return ref


@pytest.fixture(scope="module")
def any_smollm2_id(pools):
    return ids_strategy(pools, beyond=True)


@SETTINGS
@given(data=st.data())
def test_incremental_equals_reference(smollm2, any_smollm2_id, data):
    prompt = data.draw(st.one_of(st.lists(any_smollm2_id, min_size=1, max_size=10), generated(smollm2, any_smollm2_id)))
    ids = data.draw(generated(smollm2, any_smollm2_id))
    chunks = data.draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, 0]), min_size=len(ids), max_size=len(ids) + 3))
    # Stop strings: often a piece of the text itself, so they are hit (also mid-way and across tokens).
    whole = smollm2.decode(ids)
    piece = st.tuples(st.integers(0, max(0, len(whole) - 1)), st.integers(1, 4)).map(lambda p: whole[p[0] : sum(p)])
    stop = data.draw(st.lists(st.one_of(piece, st.text(min_size=1, max_size=3)).filter(bool), max_size=3))
    compare_token_by_token(smollm2, prompt, ids, chunks, stop)


def test_prompt_ending_mid_character(smollm2):
    ids = smollm2._tok.encode("the party 🎉🎉 and 日本 ok").ids
    for cut in range(1, len(ids)):  # every split of the same text into prompt and generation
        ref = compare_token_by_token(smollm2, ids[:cut], ids[cut:], [1] * (len(ids) - cut), [])
        assert "\ufffd" not in ref.text


def tiny_byte_level(tmp_path) -> Tokenizer:
    """A byte-level BPE with added tokens that exercise every rule of the table."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)} | {"Ġhi": 256, "Ã©t": 257}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    # non-special: content in the alphabet (mapped to bytes, even into invalid UTF-8), or outside it (kept as UTF-8)
    hf.add_tokens([AddedToken(t, special=False) for t in ("Ġyo", "éé", "ü x")])
    hf.add_special_tokens(["<|end|>"])
    hf.save(str(tmp_path / "tokenizer.json"))
    return Tokenizer(tmp_path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tokenizer:
    return tiny_byte_level(tmp_path_factory.mktemp("bytelevel"))


@SETTINGS
@given(data=st.data())
def test_tiny_byte_level_with_odd_added_tokens(tiny, data):
    assert tiny.byte_table is not None and len(tiny.byte_table) == 262
    ids = data.draw(st.lists(st.integers(0, 263), min_size=1, max_size=16))  # 262, 263: past the vocabulary
    in_vocab = [i for i in ids if i < 262]
    assert b"".join(tiny.byte_table[i] for i in in_vocab).decode("utf-8", "replace") == tiny.decode(in_vocab)
    stop = data.draw(st.lists(st.sampled_from([" y", "é", "x"])))
    compare_token_by_token(tiny, ids[:3], ids[3:], [1] * len(ids), stop)


def word_piece(tmp_path) -> Tokenizer:
    vocab = {"[UNK]": 0, "[CLS]": 1, "hello": 2, "wor": 3, "##ld": 4, "!": 5, "un": 6, "##believ": 7, "##able": 8}
    hf = HFTokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece(prefix="##")
    hf.add_special_tokens(["[CLS]"])
    hf.save(str(tmp_path / "tokenizer.json"))
    return Tokenizer(tmp_path)


def metaspace(tmp_path) -> Tokenizer:
    """Sentencepiece-style: '▁' for spaces and byte fallback pieces, decoded by a Sequence of decoders."""
    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("▁hello", -1.0), ("▁wor", -2.0), ("ld", -2.0), ("<0xC3>", -5.0),
             ("<0xA9>", -5.0), ("▁caf", -3.0)]
    hf = HFTokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    hf.add_special_tokens(["<s>"])
    hf.save(str(tmp_path / "tokenizer.json"))
    return Tokenizer(tmp_path)


@pytest.mark.parametrize(
    "build, prompt, generated, expected",
    [
        (word_piece, [1, 2], [3, 4, 5, 6, 7, 8], " world! unbelievable"),
        (metaspace, [1, 2], [3, 4, 7, 5, 6], " world café"),  # é arrives as two byte pieces: held, then whole
    ],
)
def test_not_byte_level_takes_the_library_path(tmp_path, caplog, build, prompt, generated, expected):
    with caplog.at_level(logging.DEBUG, logger="shoal.engine.tokenizer"):
        tok = build(tmp_path)
        detok = IncrementalDetokenizer(tok, prompt, stop=[])
    assert tok.byte_table is None and detok._table is None
    assert "not ByteLevel" in caplog.text
    texts = []
    for token in generated:
        detok.add([token])
        texts.append(detok.text)
    assert detok.text == expected
    assert "\ufffd" not in "".join(texts)  # the half character was never shown


class Skewed:
    """A byte-level tokenizer whose decode adds a character: the table must notice and step aside."""

    def __init__(self, hf: HFTokenizer) -> None:
        self._hf = hf
        self.decoder = hf.decoder

    def __getattr__(self, name):
        return getattr(self._hf, name)

    def decode(self, ids, skip_special_tokens=True):
        return self._hf.decode(ids, skip_special_tokens=skip_special_tokens) + "!"


def test_table_that_differs_from_the_library_is_not_used(tmp_path, caplog):
    tok = tiny_byte_level(tmp_path)
    assert byte_level_table(tok._tok) is not None
    with caplog.at_level(logging.DEBUG, logger="shoal.engine.tokenizer"):
        assert byte_level_table(Skewed(tok._tok)) is None
    assert "differs from the library decode" in caplog.text
