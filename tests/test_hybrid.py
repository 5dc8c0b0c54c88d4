"""BM25 in the index and lexical / hybrid retrieval (`--retriever bm25|hybrid`, `--fusion rrf|score`)."""

from __future__ import annotations

import json

import bm25s
import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli import api
from qrag_cli.cli import app
from qrag_cli.errors import EXIT_INCOMPATIBLE, CorruptIndexError, NoBm25Error
from qrag_cli.search.hybrid import RRF_K, fuse, lexical_list
from qrag_cli.search.lexical import FILES
from qrag_cli.settings import QuerySettings
from qrag_cli.store.generations import current_folder
from qrag_cli.store.reader import IndexReader

runner = CliRunner()

TEXTS = [
    "Mary took the football there.", "Mary went to the garden.", "John went home.",
    "The football was in the kitchen yesterday.", "Sandra journeyed to the hallway.",
    "Daniel moved to the bathroom.", "The garden has a red football and a blue ball.",
    "John picked up the apple.", "The kitchen is north of the garden.", "Nobody saw the ship leave.",
]
QUESTION = "Where is the football now?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("hybrid") / "ix"
    api.build(TEXTS, out=out, model=str(tiny_model))
    return out


def by_hand(session, texts, question, retrieved, fusion, weight=0.5):
    """One step's fused ranking computed directly: bm25s on the chunk texts, numpy on the vectors."""
    reader = session.index
    state_texts = [question, *(texts[p] for p in sorted(retrieved))]
    state = session.encoder.encode_states([state_texts], session.settings.piece_tokens)[0]
    dense = np.asarray(reader.vectors, dtype=np.float32) @ state
    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False), show_progress=False)
    query = bm25s.tokenize([" ".join(state_texts)], stopwords="en", return_ids=False, show_progress=False)[0]
    lex = model.get_scores(query) if query else np.zeros(len(texts))
    left = [i for i in range(len(texts)) if i not in retrieved]
    d_rank = sorted(left, key=lambda i: (-dense[i], i))
    l_rank = sorted((i for i in left if lex[i] > 0), key=lambda i: (-lex[i], i))
    fused = {}
    if fusion == "rrf":
        for ranking in (d_rank, l_rank):
            for r, i in enumerate(ranking, 1):
                fused[i] = fused.get(i, 0.0) + 1 / (60 + r)
    else:
        for ranking, scores, w in ((d_rank, dense, weight), (l_rank, lex, 1 - weight)):
            vals = [float(scores[i]) for i in ranking]
            lo, hi = min(vals, default=0), max(vals, default=0)
            for i in ranking:
                fused[i] = fused.get(i, 0.0) + w * ((float(scores[i]) - lo) / (hi - lo) if hi > lo else 1.0)
    return sorted(fused, key=lambda i: (-fused[i], i)), dense


@pytest.mark.parametrize("fusion", ["rrf", "score"])
def test_hybrid_equals_a_hand_computed_fusion(index_dir, fusion):
    session = api.QuerySession(QuerySettings(index=str(index_dir), model="", retriever="hybrid", fusion=fusion))
    texts = [session.index.chunk(i).text for i in range(len(session.index))]
    assert texts == TEXTS
    (one,) = session.results([QUESTION], steps=1, k=4)
    expected, dense = by_hand(session, texts, QUESTION, [], fusion)
    assert [h.chunk for h in one.retrieved] == expected[:4]
    # Q values stay the policy's: the dense score of each chunk taken
    assert [h.score for h in one.retrieved] == pytest.approx([float(dense[i]) for i in expected[:4]], abs=1e-4)
    # step 2: the BM25 query and the dense state are the question plus the chunk taken
    (two,) = session.results([QUESTION], steps=2, k=1)
    first = two.retrieved[0].chunk
    assert first == expected[0]
    again, _ = by_hand(session, texts, QUESTION, [first], fusion)
    assert two.retrieved[1].chunk == again[0]


def test_bm25_retriever_ranks_by_bm25(index_dir):
    session = api.QuerySession(QuerySettings(index=str(index_dir), model="", retriever="bm25"))
    (one,) = session.results([QUESTION], steps=1, k=3)
    model = bm25s.BM25()
    model.index(bm25s.tokenize(TEXTS, stopwords="en", return_ids=False, show_progress=False), show_progress=False)
    lex = model.get_scores(bm25s.tokenize([QUESTION], stopwords="en", return_ids=False, show_progress=False)[0])
    assert [h.chunk for h in one.retrieved] == sorted(range(len(TEXTS)), key=lambda i: (-lex[i], i))[:3]


def test_fusion_functions():
    dense = (np.array([3, 1, 2]), np.array([0.9, 0.5, 0.1]))
    lexical = (np.array([2, 3]), np.array([4.0, 2.0]))
    ids, scores = fuse(dense, lexical, "rrf")
    assert ids.tolist() == [3, 2, 1]
    assert scores[0] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    ids, scores = fuse(dense, lexical, "score", 0.5)
    assert ids.tolist() == [2, 3, 1] and scores.tolist() == pytest.approx([0.5, 0.5, 0.25])
    ids, sc = lexical_list(np.array([0.0, 2.0, 2.0, 1.0], dtype=np.float32), {1}, 5)
    assert ids.tolist() == [2, 3] and sc.tolist() == [2.0, 1.0]


def test_bm25_files_are_checksummed_and_a_flipped_byte_is_refused(tmp_path, tiny_model):
    out = tmp_path / "ix"
    api.build(TEXTS, out=out, model=str(tiny_model))
    folder = current_folder(out)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["bm25"]["files"] == list(FILES)
    for name in FILES:
        assert (folder / name).is_file() and manifest["files"][name]["bytes"] == (folder / name).stat().st_size
        assert "xxh3_128" in manifest["files"][name]
    assert not any(p.suffix == ".pkl" for p in folder.iterdir())
    path = folder / "bm25.data.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptIndexError, match="bm25.data.npy"):
        IndexReader(out)


def test_query_bm25_without_bm25_is_a_one_line_error(tmp_path, tiny_model):
    out = tmp_path / "ix"
    api.build(TEXTS, out=out, model=str(tiny_model), bm25=False)
    with pytest.raises(NoBm25Error):
        IndexReader(out).bm25()
    res = runner.invoke(app, ["query", "--index", str(out), "--retriever", "bm25", QUESTION])
    assert res.exit_code == EXIT_INCOMPATIBLE
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no BM25 index" in lines[0] and "--add-bm25" in lines[0], res.stderr
    # adding it afterwards: a new generation, same chunks and vectors, then the query works
    before = current_folder(out)
    added = runner.invoke(app, ["index", "--add-bm25", str(out)])
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["bm25"] == "added" and current_folder(out) != before
    res = runner.invoke(app, ["query", "--index", str(out), "--retriever", "bm25", "--format", "jsonl", QUESTION])
    assert res.exit_code == 0, res.stderr
    fresh = tmp_path / "fresh"
    api.build(TEXTS, out=fresh, model=str(tiny_model))
    for name in FILES:  # the same files a build writes
        assert (current_folder(out) / name).read_bytes() == (current_folder(fresh) / name).read_bytes()


def test_cli_hybrid_query(index_dir):
    res = runner.invoke(app, ["query", "--index", str(index_dir), "--retriever", "hybrid", "--fusion", "score",
                              "--steps", "2", "--format", "jsonl", QUESTION])
    assert res.exit_code == 0, res.stderr
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert [h["step"] for h in row["retrieved"]] == [1, 2]
    assert len({h["chunk"] for h in row["retrieved"]}) == 2
    bad = runner.invoke(app, ["query", "--index", str(index_dir), "--retriever", "sparse", QUESTION])
    assert bad.exit_code == 2 and "unknown retriever" in bad.stderr


def test_bench_hybrid_methods(tmp_path, tiny_model):
    from qrag_cli.bench.runner import run_bench
    from qrag_cli.settings import BenchSettings
    from tests.test_bench import HEADER, tiny_samples, write_lines

    data = write_lines(tmp_path / "tiny.jsonl", [HEADER, *tiny_samples()])
    res = run_bench(BenchSettings(data=str(data), model=str(tiny_model), trained="", steps=3, threads=1,
                                  cache=str(tmp_path / "cache"), fusion="score",
                                  methods="multistep-hybrid,hybrid-topk,bm25-topk"))
    assert res["methods"] == ["bm25-topk", "hybrid-topk", "multistep-hybrid"]
    rows = {r["method"]: r for r in res["results"]}
    for m in res["methods"]:
        assert rows[m]["n"] == 3 and rows[m]["retrieved_mean"] == 3 and 0 <= rows[m]["support_recall"] <= 1
    # the support sentence shares "Mary" and its verb with no other line but the first story line:
    # BM25 finds it within 3, and the fusion keeps it (BM25's list is half of the fused score)
    assert rows["bm25-topk"]["coverage"] == 1.0 and rows["hybrid-topk"]["coverage"] == 1.0
