"""`qrag bench`: contexts and the background-embedding cache, bad settings and --data files, the
reader over a local HTTP server, and a small end-to-end run with the real default model (ONNX)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from qrag_cli.bench.baselines import METHODS
from qrag_cli.bench.contexts import BackgroundCache, ContextBuilder, MemoryContext, splice_vectors
from qrag_cli.bench.report import markdown_table, write_results
from qrag_cli.bench.runner import resolve, run_bench
from qrag_cli.data.samples import materialise
from qrag_cli.errors import InputError
from qrag_cli.settings import BenchSettings

FRACTIONS = ("coverage", "fact_f1", "precision", "recall")


@pytest.fixture(scope="module")
def encoder():
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import resolve_model

    return load_encoder(resolve_model("default"), threads=2)


class Counting:
    """Wraps an encoder and counts `encode_texts` calls and texts."""

    def __init__(self, enc) -> None:
        self.enc = enc
        self.calls = 0
        self.texts = 0

    def encode_texts(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return self.enc.encode_texts(texts)

    def __getattr__(self, name):
        return getattr(self.enc, name)


def needle_ref(n: int) -> dict:
    """A referenced background that needs no shared data (RULER confusable-needle haystack)."""
    return {"kind": "needle", "split": "test", "seed": 3, "values": "numbers", "n_sentences": n}


def long_sample(n_bg: int = 40) -> dict:
    facts = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary travelled to the office."]
    return {"id": "s0", "task": "qa1", "question": "Where is Mary?", "answer": "office",
            "background": needle_ref(n_bg),
            "facts": [{"position": p, "text": t} for p, t in zip([0, 17, n_bg + 2], facts)], "support": [n_bg + 2]}


def novels_or_skip() -> None:
    from qrag_cli.data import haystack as hs

    folder = hs.novels_dir()
    if not (folder.is_dir() and any(folder.glob("*.txt.xz"))):
        pytest.skip(f"shared Gutenberg novels not found under {folder} (set QRAG_SHARED)")


# --- contexts ------------------------------------------------------------------------------------


def test_memory_context_is_a_chunk_source():
    ctx = MemoryContext(["ab", "cde", "f"], np.zeros((3, 4), dtype=np.float32), doc="x")
    assert len(ctx) == 3
    c = ctx.chunk(1)
    assert (c.position, c.doc, c.start, c.end, c.text) == (1, "x", 3, 6, "cde")
    with pytest.raises(IndexError):
        ctx.chunk(3)
    with pytest.raises(InputError):
        MemoryContext(["a"], np.zeros((2, 4), dtype=np.float32))


def test_splice_vectors_matches_insert_positions():
    bg = np.arange(10, dtype=np.float32).reshape(5, 2)
    facts = -np.ones((2, 2), dtype=np.float32)
    out = splice_vectors(bg, facts, [0, 4])
    assert out[:, 0].tolist() == [-1, 0, 2, 4, -1, 6, 8]
    with pytest.raises(InputError):
        splice_vectors(bg, facts, [4, 4])


def test_spliced_context_equals_embedding_the_materialised_context(encoder, tmp_path):
    sample = long_sample()
    texts = materialise(sample)
    ctx, build_s, new = ContextBuilder(encoder, tmp_path).build(sample)
    assert new == 3 and build_s >= 0
    assert list(ctx.texts) == texts
    direct, _ = encoder.encode_texts(texts)
    assert ctx.vectors.shape == direct.shape
    np.testing.assert_allclose(ctx.vectors, direct, atol=3e-3)
    for p in sample["support"]:  # support positions line up with materialise
        assert ctx.chunk(p).text == "Mary travelled to the office."


def test_background_cache_hit_prefix_and_extension(encoder, tmp_path):
    first = Counting(encoder)
    bg = ContextBuilder(first, tmp_path).background(needle_ref(40))
    assert first.calls >= 1 and not bg.from_cache and bg.embedded == 40

    again = Counting(encoder)  # a new run (new builder, same cache folder): nothing embedded
    b = ContextBuilder(again, tmp_path)
    hit = b.background(needle_ref(40))
    assert again.calls == 0 and hit.from_cache
    assert isinstance(hit.vectors, np.memmap) and hit.vectors.dtype == np.float16
    np.testing.assert_array_equal(hit.vectors, bg.vectors)
    shorter = b.background(needle_ref(25))  # a slice of the longer cached background
    assert again.calls == 0 and shorter.vectors.shape[0] == 25
    longer = b.background(needle_ref(52))  # extends the cached 40: only 12 new sentences embedded
    assert again.texts == 12 and longer.reused == 40
    np.testing.assert_array_equal(longer.vectors[:40], bg.vectors)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert not [f for f in files if ".tmp" in f], files  # atomic: no temporary files left behind
    metas = [json.loads((tmp_path / f).read_text()) for f in files if f.endswith(".json")]
    assert {m["n"] for m in metas} == {40, 52}
    assert all(m["background"]["kind"] == "needle" and m["model"]["checksum"] == encoder.spec.checksum for m in metas)


def test_background_cache_ignores_leftovers_and_corrupt_files(encoder, tmp_path):
    texts = materialise({"background": needle_ref(20), "facts": []} | {"id": "x"})
    ContextBuilder(encoder, tmp_path).background(needle_ref(20))
    npy = next(tmp_path.glob("*.npy"))
    (tmp_path / (npy.name + ".tmp-1-dead")).write_bytes(b"half a file")  # an interrupted writer
    npy.write_bytes(npy.read_bytes()[:200])  # truncated vectors
    c = Counting(encoder)
    bg = BackgroundCache(tmp_path, c).get(needle_ref(20), texts)
    assert c.texts == 20 and bg.vectors.shape == (20, encoder.dim)  # re-embedded, file replaced
    c2 = Counting(encoder)
    assert BackgroundCache(tmp_path, c2).get(needle_ref(20), texts).from_cache and c2.calls == 0
    # other sentences under the same reference (a changed generator) never reuse the vectors
    c3 = Counting(encoder)
    assert not BackgroundCache(tmp_path, c3).get(needle_ref(20), ["x"] * 20).from_cache


def test_sentence_cache_embeds_repeated_sentences_once(encoder, tmp_path):
    c = Counting(encoder)
    b = ContextBuilder(c, tmp_path)
    ctx = ["A cat sat.", "Mary went to the office.", "A cat sat."]
    _, _, new = b.build({"id": "a", "context": ctx, "support": [1]})
    assert new == 2 and c.texts == 2
    _, _, new = b.build({"id": "b", "context": ctx[:2] + ["Dogs bark."], "support": [1]})
    assert new == 1 and c.texts == 3


# --- settings and --data ------------------------------------------------------------------------


@pytest.fixture()
def no_model(monkeypatch):
    """Fail if a model is loaded: validation must come before any heavy work."""
    import qrag_cli.embed.models as models

    def boom(*a, **k):
        raise AssertionError("a model was resolved before the settings were validated")

    monkeypatch.setattr(models, "resolve_model", boom)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"tasks": "qa1,qa9"}, "qa9"),
        ({"lengths": "1K,3Q"}, "3Q"),
        ({"benchmark": "ruler", "tasks": "qa1"}, "niah_single"),
        ({"benchmark": "ruler", "lengths": "1K"}, "16K"),
        ({"benchmark": "longbench"}, "babilong, ruler"),
        ({"split": "dev"}, "train"),
        ({"n": 0}, "--n"),
        ({"steps": -1}, "--steps"),
        ({"stop_threshold": float("nan")}, "--stop-threshold"),
        ({"reader_url": "localhost:8000"}, "http://"),
        ({"tasks": " , "}, "empty"),
        ({"methods": "dense-topk,colbert"}, "unknown method 'colbert'"),
        ({"methods": "qrag-trained", "trained": ""}, "needs --trained"),
    ],
)
def test_bad_settings_fail_before_heavy_work(no_model, kw, message):
    with pytest.raises(InputError) as exc:
        run_bench(BenchSettings(**kw))
    assert message in str(exc.value)


def test_unknown_task_and_length_list_the_choices(no_model):
    with pytest.raises(InputError, match="choose from qa1, qa2, qa3, qa4, qa5"):
        run_bench(BenchSettings(tasks="qa1,qa9"))
    with pytest.raises(InputError, match="1K, 4K, 32K, 128K, 1M, 10M"):
        run_bench(BenchSettings(lengths="1K,3Q"))


def test_resolve_defaults():
    p = resolve(BenchSettings(tasks="qa2, qa1,qa2", lengths="1K", cache="/tmp/x"))
    assert p.tasks == ["qa2", "qa1"] and p.steps == 6 and p.k == 6 and p.cache == Path("/tmp/x")
    r = resolve(BenchSettings(benchmark="ruler", k_dense=3))
    assert r.tasks[0] == "niah_single" and r.lengths == ["4K", "16K", "32K"] and r.steps == 5 and r.k == 3
    assert r.settings.k_dense == 3 and r.settings.steps == 5


HEADER = {"format": "qrag-samples", "format_version": 1, "benchmark": "babilong", "task": "qa1", "length": "12",
          "split": "test", "seed": 0, "n": 3, "background": {"kind": "noise", "n_sentences": 10, "per_sample": True}}
NOISE = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]


def tiny_samples() -> list[dict]:
    out = []
    for i in range(3):
        story = ["Mary moved to the garden.", "John went to the bedroom.", "Mary travelled to the kitchen."]
        ctx = NOISE[: 2 + i] + story[:2] + NOISE[2 + i :] + [story[2], "It rained.", "Birds sang.", "The end came."]
        out.append({"id": f"t{i}", "task": "qa1", "question": "Where is Mary?", "answer": "kitchen",
                    "context": ctx, "support": [ctx.index(story[2])]})
    return out


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "lines, where, message",
    [
        ([{**HEADER, "format": "jsonl-other"}], ":1", "is not 'qrag-samples'"),
        ([{**HEADER, "format_version": 7}], ":1", "format version 7"),
        ([HEADER, tiny_samples()[0], "{not json", tiny_samples()[2]], ":3", "not JSON"),
        ([HEADER, tiny_samples()[0], {**tiny_samples()[1], "support": [99]}, tiny_samples()[2]], ":3", "out of range"),
        ([HEADER, tiny_samples()[0]], "", "announces 3 samples"),
    ],
)
def test_bad_data_file_names_file_and_line(no_model, tmp_path, lines, where, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(InputError) as exc:
        run_bench(BenchSettings(data=str(path)))
    assert f"{path}{where}" in str(exc.value) and message in str(exc.value)


def test_missing_data_file(no_model, tmp_path):
    with pytest.raises(InputError, match="not found"):
        run_bench(BenchSettings(data=str(tmp_path / "nope.jsonl")))


# --- reader ------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    reply: bytes = b""
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, *args):
        pass


def serve(reply: bytes):
    """A local server on 127.0.0.1 (port 0) answering `reply` to every POST, in a daemon thread."""
    handler = type("H", (_Handler,), {"reply": reply, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, handler


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bench_with_reader(tmp_path, url: str) -> dict:
    data = write_lines(tmp_path / "tiny.jsonl", [HEADER, *tiny_samples()])
    return run_bench(BenchSettings(data=str(data), reader_url=url, reader_model="m", reader_timeout=3,
                                   threads=2, cache=str(tmp_path / "cache"), trained=""))  # the reader, 3 methods


def test_reader_correct_garbage_and_down(tmp_path):
    good = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Mary is in the kitchen."}}]})
    server, handler = serve(good.encode())
    try:
        res = bench_with_reader(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    rows = res["results"]
    assert {r["method"] for r in rows} == {"dense-topk", "bm25-topk", "multistep-base"}
    assert all(r["answer_accuracy"] == 1.0 and r["reader_failures"] == 0 and r["reader_answered"] == 3 for r in rows)
    assert res["reader"]["calls"] == 9 and res["reader"]["failures"] == 0
    path, body = handler.seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "m"
    user = body["messages"][-1]["content"]
    assert user.rstrip().endswith("Question: Where is Mary?\nAnswer:")
    sample = tiny_samples()[0]
    lines = user.split("Context:\n", 1)[1].split("\n\nQuestion:")[0].split("\n")
    positions = [sample["context"].index(x) for x in lines]
    assert positions == sorted(positions)  # kept chunks in context order
    table = markdown_table(res)
    assert "Answer accuracy" in table
    assert ", n=3, " in table  # the --data file's own sample count, not --n

    for reply in (b"<html>oops</html>", json.dumps({"choices": []}).encode(), json.dumps({"id": 1}).encode()):
        server, _ = serve(reply)
        try:
            res = bench_with_reader(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        finally:
            server.shutdown()
            server.server_close()
        assert res["reader"]["failures"] == res["reader"]["calls"] == 9
        assert all(r["answer_accuracy"] is None and r["reader_failures"] == 3 for r in res["results"])
        assert res["reader"]["errors"] and all(r["coverage"] is not None for r in res["results"])

    res = bench_with_reader(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert res["reader"]["failures"] == 9 and "cannot reach" in res["reader"]["errors"][0]
    assert all(r["reader_failures"] == 3 for r in res["results"])


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture()
def positional_tiny_model(tiny_model, tmp_path):
    """The tiny random BERT of conftest, declaring int rotary positions: the 'qrag-trained' path."""
    import shutil

    folder = Path(shutil.copytree(tiny_model, tmp_path / "tiny-int"))
    (folder / "qrag_pooling.json").write_text(json.dumps({"kind": "mean", "normalize": True, "scale": 1.0,
                                                          "positions": "int"}))
    return folder


def test_trained_model_is_evaluated_with_its_own_cache(tmp_path, positional_tiny_model):
    data = write_lines(tmp_path / "tiny.jsonl", [HEADER, *tiny_samples()])
    res = run_bench(BenchSettings(data=str(data), trained=str(positional_tiny_model), steps=3, threads=1,
                                  cache=str(tmp_path / "cache")))
    assert res["methods"] == list(METHODS) and res["tasks"] == ["qa1"] and res["lengths"] == ["12"]
    trained = next(r for r in res["results"] if r["method"] == "qrag-trained")
    assert trained["n"] == 3 and trained["retrieved_mean"] == 3 and 0 <= trained["coverage"] <= 1
    assert res["models"]["trained"]["pooling"]["positions"] == "int"
    assert res["models"]["trained"]["checksum"] != res["models"]["base"]["checksum"]
    assert res["data"]["path"] == str(data) and res["settings"]["data"] == str(data)
    only = run_bench(BenchSettings(data=str(data), trained=str(positional_tiny_model), steps=3, threads=1,
                                   cache=str(tmp_path / "cache"), methods="qrag-trained,bm25-topk"))
    assert only["methods"] == ["bm25-topk", "qrag-trained"]
    assert {r["method"] for r in only["results"]} == {"bm25-topk", "qrag-trained"}
    timing = ("latency_ms_median", "build_ms_mean", "sentences_embedded_mean")
    again = next(r for r in only["results"] if r["method"] == "qrag-trained")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in trained.items() if k not in timing}


@pytest.mark.slow
def test_run_bench_end_to_end(tmp_path):
    novels_or_skip()
    seen: list[tuple[str, int, int]] = []
    settings = BenchSettings(tasks="qa1,qa2", lengths="1K", n=4, threads=1,
                             cache=str(tmp_path / "cache"), out=str(tmp_path / "out"))
    res = run_bench(settings, progress=lambda stage, done, total: seen.append((stage, done, total)))
    methods = list(METHODS)  # qrag-trained: the shipped policy:default, run by default
    assert seen and seen[-1][1] == seen[-1][2]
    assert res["format"] == "qrag-bench-results" and res["methods"] == methods
    assert res["tasks"] == ["qa1", "qa2"] and res["lengths"] == ["1K"] and res["steps"] == 6 and res["k"] == 6
    rows = res["results"]
    assert len(rows) == 2 * len(methods)
    assert {(r["method"], r["task"]) for r in rows} == {(m, t) for m in methods for t in ("qa1", "qa2")}
    for r in rows:
        assert r["n"] == 4 and r["length"] == "1K"
        for key in FRACTIONS:
            assert 0.0 <= r[key] <= 1.0, (r["method"], key)
        assert r["latency_ms_median"] > 0 and r["build_ms_mean"] > 0
        assert 0 < r["kept_mean"] <= r["retrieved_mean"] <= 6
    dense = {r["task"]: r for r in rows if r["method"] == "dense-topk"}
    assert dense["qa1"]["retrieved_mean"] == 6 and dense["qa1"]["kept_mean"] == 6
    assert dense["qa1"]["coverage"] >= 0.5  # one supporting fact among 6 of ~65 chunks
    assert dense["qa1"]["sentences_embedded_mean"] > 0
    for key in ("qrag", "numpy", "onnxruntime", "bm25s", "python"):
        assert res["versions"][key]
    assert res["machine"]["cpu_count"] >= 1 and res["wall_s"] > 0
    assert res["settings"]["steps"] == 6 and res["settings"]["cache"] == str(tmp_path / "cache")
    assert res["backgrounds"] == []  # 1K contexts are stored per sample: no shared background
    assert len(res["averages"]) == len(methods) and res["reader"] is None

    table = write_results(settings.out, res)
    out = Path(settings.out)
    loaded = json.loads((out / "results.json").read_text())
    assert loaded["results"] == rows
    assert json.loads((out / "settings.json").read_text())["tasks"] == "qa1,qa2"
    png = (out / "coverage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (out / "results.md").read_text() == table
    assert "| qa1 | 1K |" in table and "| **avg** | 1K |" in table and "multistep-base" in table
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_positions_do_not_split_the_background_cache(tmp_path, tiny_model):
    """Positions are applied at search time: a positional model with the base's weights shares its cache key."""
    import shutil

    from qrag_cli.bench.contexts import model_key
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import resolve_model

    from dataclasses import asdict

    same_weights = Path(shutil.copytree(tiny_model, tmp_path / "same"))
    pooling = {**asdict(resolve_model(str(tiny_model)).pooling), "positions": "int"}
    (same_weights / "qrag_pooling.json").write_text(json.dumps(pooling))
    base = model_key(load_encoder(resolve_model(str(tiny_model))))
    positional = model_key(load_encoder(resolve_model(str(same_weights))))
    assert resolve_model(str(same_weights)).pooling.positions == "int"
    assert positional == base
