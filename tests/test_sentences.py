"""Tests of the streaming sentence splitter (qrag_cli.corpus.sentences)."""

from __future__ import annotations

import lzma
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrag_cli.corpus.sentences import TOKEN, split_sentences


def sents(text: str, **kw) -> list[str]:
    """The sentences of `text`, checking the offset contract on the way."""
    out = []
    for start, end, norm in split_sentences([text], **kw):
        piece = text[start:end]
        assert piece == piece.strip() and piece
        assert " ".join(piece.split()) == norm
        out.append(norm)
    return out


def blocks_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def shared_dir() -> Path:
    """$QRAG_SHARED, else the ``shared`` folder beside the project root."""
    env = os.environ.get("QRAG_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def test_dialogue_and_closing_quotes() -> None:
    assert sents('"I am here," said he. "Come in!" He came.') == ['"I am here," said he.', '"Come in!"', "He came."]
    assert sents('"Stop!" cried Mary. She ran.') == ['"Stop!" cried Mary.', "She ran."]
    assert sents("“Where?” he asked. ‘Here,’ she said. ‘Look!’ Then silence.") == [
        "“Where?” he asked.",
        "‘Here,’ she said.",
        "‘Look!’",
        "Then silence.",
    ]
    assert sents("He said (quietly.) Then left. It was _over._ The end.") == [
        "He said (quietly.)",
        "Then left.",
        "It was _over._",
        "The end.",
    ]


def test_terminal_punctuation_variants() -> None:
    assert sents("Really?! Yes!! Wait... Then what? Go… Now 1850 came. 1851 went.") == [
        "Really?!",
        "Yes!!",
        "Wait...",
        "Then what?",
        "Go…",
        "Now 1850 came.",
        "1851 went.",
    ]
    assert sents("I was... thinking. Oh! how nice. A (new) start. [Note] here.") == [
        "I was... thinking.",
        "Oh! how nice.",
        "A (new) start.",
        "[Note] here.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Mr. Smith and Mrs. Jones met Ms. Lee and Dr. Watson.",
        "They went to St. Paul's with Prof. Moriarty and Rev. Green.",
        "Capt. Hook, Col. Mustard, Gen. Lee, Lt. Dan, Sgt. Pepper and Hon. Member.",
        "John Smith Jr. And Sr. Smith climbed Mt. Everest.",
        "See No. 5 and cats vs. Dogs, apples etc. And more.",
        "Fruit, e.g. Apples, i.e. Red ones, cf. Pears at 5 p.m. Or 9 a.m. Sharp.",
        "J. R. R. Tolkien met C. S. Lewis in the U.S.A. Today.",
        "MR. BROWN and DR. GREEN arrived.",
    ],
)
def test_abbreviations_do_not_end_sentences(text: str) -> None:
    assert sents(text) == [text]


def test_sentence_ending_words_that_look_like_abbreviations() -> None:
    assert sents("So did I. Then we left.") == ["So did I.", "Then we left."]
    assert sents("He said no. Then he left.") == ["He said no.", "Then he left."]
    assert sents('"No. I will not."') == ['"No.', 'I will not."']


def test_line_wraps_and_paragraphs() -> None:
    text = (
        "CHAPTER I.\n\n"
        "It was a dark and stormy night; the rain fell in torrents, except at\n"
        "occasional intervals, when it was checked.\n"
        "\n"
        "    \n"
        "A new paragraph without an end\n"
        "\n"
        "lowercase start. Next sentence\n"
        "wraps here.\n"
    )
    assert sents(text) == [
        "CHAPTER I.",
        "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals, when it was checked.",
        "A new paragraph without an end",
        "lowercase start.",
        "Next sentence wraps here.",
    ]


def test_blank_line_ends_sentence_even_before_lowercase() -> None:
    assert sents("said he.\n\nand then\n \t\nmore") == ["said he.", "and then", "more"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", " \t \n  \n "])
def test_whitespace_only(text: str) -> None:
    assert list(split_sentences([text])) == []
    assert list(split_sentences([])) == []


def test_offsets_into_concatenation() -> None:
    text = "  Hello   there.\n\n  \"Quoted!\"  He\n  left.  "
    out = list(split_sentences(blocks_of(text, 3)))
    assert [(text[s:e], t) for s, e, t in out] == [
        ("Hello   there.", "Hello there."),
        ('"Quoted!"', '"Quoted!"'),
        ("He\n  left.", "He left."),
    ]


SAMPLE = (
    'CHAPTER IV.\n\n"I am here," said he. "Come in!" He came. Mr. Smith and J. R. Jones\n'
    "went to St. Paul's at 5 p.m. on Monday... Really?! Yes. _The end._\n\n"
    + "A long sentence with many many words, " * 30
    + "ends here. "
    + "x" * 3000
    + " tail. So did I.\r\n\r\nOk."
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 10**6])
def test_block_boundaries_do_not_matter(size: int) -> None:
    whole = list(split_sentences([SAMPLE], max_tokens=16))
    assert list(split_sentences(blocks_of(SAMPLE, size), max_tokens=16)) == whole
    for s, e, t in whole:
        assert " ".join(SAMPLE[s:e].split()) == t


def test_long_sentence_split_by_tokens() -> None:
    words = [f"w{i}" for i in range(100)]
    text = "Start " + ", ".join(words) + " end."
    out = list(split_sentences([text], max_tokens=16))
    tokens = TOKEN.findall(text)
    assert len(out) == -(-len(tokens) // 16)
    got: list[str] = []
    for s, e, t in out:
        toks = TOKEN.findall(t)
        assert 1 <= len(toks) <= 16
        assert " ".join(text[s:e].split()) == t
        got.extend(toks)
    assert got == tokens
    assert all(out[i][1] <= out[i + 1][0] for i in range(len(out) - 1))


def test_giant_token_split_by_chars() -> None:
    text = "Intro. " + "a" * 5000 + " b. Next."
    out = list(split_sentences([text], max_tokens=8))
    assert all(len(t) <= 64 for _, _, t in out)
    assert out[0][2] == "Intro."
    assert out[-1][2] == "Next."
    assert "".join(t for _, _, t in out[1:-1]).replace(" ", "") == "a" * 5000 + "b."


def test_ten_megabyte_line_streams() -> None:
    """10 MB without spaces or sentence ends: linear time, bounded memory, pieces emitted early."""
    total = 10 * (1 << 20)
    pulled = 0

    def gen() -> Iterator[str]:
        nonlocal pulled
        for _ in range(total // (1 << 20)):
            pulled += 1
            yield "a" * (1 << 20)

    it = split_sentences(gen(), max_tokens=128)
    first = next(it)
    assert pulled == 1  # streamed: the first piece comes after one block
    assert first == (0, 1024, "a" * 1024)
    count, covered, prev_end = 1, 1024, 1024
    for s, e, t in it:
        assert s == prev_end and e - s == len(t) <= 1024
        covered += e - s
        prev_end = e
        count += 1
    assert covered == total
    assert count == total // 1024


def test_ten_megabyte_line_with_words() -> None:
    line = "word " * (2 * (1 << 20))  # 10 MB, 2M tokens, no sentence end
    n = 0
    for s, e, t in split_sentences(blocks_of(line, 1 << 20), max_tokens=128):
        assert len(t) <= 1024
        n += 1
    assert n == 2 * (1 << 20) // 128


def _novel() -> Path:
    folder = shared_dir() / "data" / "gutenberg"
    files = sorted(folder.glob("*.txt.xz")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared Gutenberg novels not found under {folder} (set QRAG_SHARED)")
    preferred = folder / "austen_emma.txt.xz"
    return preferred if preferred in files else files[0]


def test_real_novel() -> None:
    path = _novel()
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    out = list(split_sentences(blocks_of(text, 1 << 16)))
    assert out == list(split_sentences([text]))
    # plausible: 40..250 characters per sentence on average
    assert 40 <= len(text) / len(out) <= 250
    for s, e, t in out:
        assert " ".join(text[s:e].split()) == t
        assert not re.search(r"\b(Mr|Mrs|Ms|Dr|St|Messrs)\.[\"'”’_]*$", t), t
        assert len(TOKEN.findall(t)) <= 128
    assert not any(re.search(r"\b(Mr|Mrs|Dr)\.$", t) for _, _, t in out)
    # most sentences start like sentences
    starts = sum(1 for _, _, t in out if not t[0].islower())
    assert starts / len(out) > 0.97


def test_long_whitespace_runs_stream_the_same() -> None:
    """Runs of spaces longer than a piece may be are cut the same way whatever the blocks."""
    text = "a " * 100 + " " * 300 + "b. " * 10 + "   \n " * 100 + "Mr." + " " * 500 + "x. y" + " " * 129 + "Z."
    whole = list(split_sentences([text], max_tokens=16))
    for size in (1, 5, 33, 200):
        assert list(split_sentences(blocks_of(text, size), max_tokens=16)) == whole
    for s, e, t in whole:
        assert " ".join(text[s:e].split()) == t and len(t) <= 128
    assert whole[-1][2] == "Z."


def test_huge_whitespace_run_after_period_is_fast() -> None:
    blocks = ["He left."] + [" " * 1000] * 5000 + ["then he came back."]
    assert [t for _, _, t in split_sentences(blocks)] == ["He left.", "then he came back."]


# --- records: line breaks that end a record --------------------------------------------------------


def test_key_value_lines_stay_apart_from_prose() -> None:
    text = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
            "VAR ABCDE = 12345\n"
            "The grass is green. The sky is blue.\n"
            "VAR FGHIJ = VAR ABCDE \n"
            "VAR KLMNO = VAR FGHIJ\n"
            "Here we go.")
    out = sents(text)
    assert "VAR ABCDE = 12345" in out and "VAR FGHIJ = VAR ABCDE" in out and "VAR KLMNO = VAR FGHIJ" in out
    assert out[-1] == "Here we go." and len(out) == 11


def test_lists_tables_and_verse_lines() -> None:
    assert sents("Buy these\n- milk\n- bread\n1. first\n2) second\n| a | b |\n| 1 | 2 |") == [
        "Buy these", "- milk", "- bread", "1. first", "2) second", "| a | b |", "| 1 | 2 |"]
    assert sents("timeout = 30\nretries: 3\nname := x\nmode += 1") == ["timeout = 30", "retries: 3", "name := x", "mode += 1"]
    assert sents("VAR QPE = 64019\nthe next line\nhere") == ["VAR QPE = 64019", "the next line here"]
    wide = "It was the best of times, it was the worst of times, it was the age of\n"
    verse = "Tiger, tiger, burning bright\nIn the forests of the night,\nWhat immortal hand or eye\n"
    assert sents(wide + "wisdom.\n\n" + verse) == [
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
        "Tiger, tiger, burning bright", "In the forests of the night,", "What immortal hand or eye"]


def test_full_lines_and_lowercase_continuations_are_joined() -> None:
    text = ("He had been sitting for a long while by the fire when Mr. Knightley\n"
            "and the two young ladies came in from their walk; and Emma, seeing\n"
            "Harriet pale, asked her why.")
    assert sents(text) == [" ".join(text.split())]
    assert sents("a short line\nthat goes on.") == ["a short line that goes on."]


def test_cjk_sentence_ends() -> None:
    assert sents("我是学生。你好！他呢？「好的。」最后一句") == ["我是学生。", "你好！", "他呢？", "「好的。」", "最后一句"]
    assert sents("これはペンです。 それは本です。") == ["これはペンです。", "それは本です。"]


RECORDS = ("Intro line that is fairly long and wraps onto the next line of\nthe text here.\n"
           "VAR QPE = 64019\nthe grass is green.\n- item one\n- item two\n我是学生。你好！\n"
           "Short\nLine two\n\nAnd a long paragraph line that wraps at about seventy characters\n"
           "Wide. ") * 3


@pytest.mark.parametrize("size", [1, 2, 5, 17, 64, 10**6])
def test_record_breaks_do_not_depend_on_blocks(size: int) -> None:
    whole = list(split_sentences([RECORDS], max_tokens=16))
    assert list(split_sentences(blocks_of(RECORDS, size), max_tokens=16)) == whole
    assert "VAR QPE = 64019" in [t for _, _, t in whole]


def _gutenberg(name: str) -> str:
    path = shared_dir() / "data" / "gutenberg" / name
    if not path.is_file():
        pytest.skip(f"{path} not found (set QRAG_SHARED)")
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def test_real_gutenberg_wrapped_paragraph_joined_and_verse_kept() -> None:
    text = _gutenberg("austen_emma.txt.xz")
    out = [t for _, _, t in split_sentences([text])]
    start = text.index("Emma Woodhouse, handsome, clever, and rich")
    para = text[start : text.index("\n\n", start)]
    assert "\n" in para  # hard-wrapped in the file
    assert " ".join(para.split()) in out  # one sentence, the wraps joined
    assert "“For when a lady's in the case," in out  # verse: each line its own chunk
    assert "“You know all other things give place.”" in out


def test_real_key_value_lines() -> None:
    """The project's own pyproject.toml: its ``key = value`` lines stay one chunk each."""
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    out = [t for _, _, t in split_sentences([text])]
    for line in ('name = "qrag-cli"', 'version = "0.1.0"', 'requires-python = ">=3.10"'):
        assert line in out
