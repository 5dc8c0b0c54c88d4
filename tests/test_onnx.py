"""ONNX embedders: differential tests against PyTorch, `qrag export`, torch-free querying, bad files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.embed.encoder import load_encoder
from qrag_cli.embed.models import resolve_model
from qrag_cli.store.generations import current_folder
from tests.conftest import novel_sentences

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.txt"


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def scaled_tiny(tmp_path_factory, tiny_model):
    """A tiny 'trained checkpoint': unnormalised mean pooling divided by a scale, as the method trains."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-scaled"
    shutil.copytree(tiny_model, folder)
    (folder / "qrag_pooling.json").write_text(json.dumps({"kind": "mean", "normalize": False, "scale": 4.0}))
    return folder


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    res = invoke("export", tiny_model, "--out", out)
    assert res.exit_code == 0, res.stderr
    return out


def test_default_fp32_onnx_matches_pytorch_on_real_sentences(minilm_encoder):
    sentences = novel_sentences(300)
    onnx = load_encoder(resolve_model("default"), threads=2)
    assert onnx.engine == "onnx" and minilm_encoder.engine == "torch"
    a, ta = onnx.encode_texts(sentences)
    b, tb = minilm_encoder.encode_texts(sentences)
    assert ta == tb
    c = cosines(a, b)
    assert c.mean() >= 0.9999 and c.min() >= 0.999
    states = [["Where is the football?", *sentences[i : i + 3]] for i in range(0, 60, 3)]
    assert cosines(onnx.encode_states(states), minilm_encoder.encode_states(states)).min() >= 0.999


def test_exported_checkpoint_matches_its_pytorch_model(scaled_tiny, tmp_path):
    res = invoke("export", scaled_tiny, "--out", tmp_path / "ckpt-onnx")
    assert res.exit_code == 0, res.stderr
    torch_enc = load_encoder(resolve_model(scaled_tiny))
    onnx_spec = resolve_model(tmp_path / "ckpt-onnx")
    assert onnx_spec.checksum == torch_enc.spec.checksum and onnx_spec.pooling.scale == 4.0
    texts = DEMO.read_text().split(". ")[:40]
    a, _ = load_encoder(onnx_spec).encode_texts(texts)
    b, _ = torch_enc.encode_texts(texts)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # the scale is inside the graph, not re-applied
    assert not np.allclose(np.linalg.norm(b, axis=1), 1.0)


def test_export_manifest_and_refusals(exported_tiny, tiny_model):
    m = json.loads((exported_tiny / "manifest.json").read_text())
    assert m["format"] == "qrag-onnx-model" and m["dim"] == 32 and m["quantization"] == "none"
    assert m["source"]["checksum"] == resolve_model(tiny_model).checksum
    assert (exported_tiny / "tokenizer.json").is_file()
    res = invoke("export", tiny_model, "--out", exported_tiny)
    assert res.exit_code == 2 and "exists" in res.stderr
    res = invoke("export", exported_tiny, "--out", exported_tiny.parent / "again")
    assert res.exit_code == 2 and "already an exported ONNX model" in res.stderr


def test_index_with_onnx_query_with_pytorch_and_back(exported_tiny, tiny_model, tmp_path):
    res = invoke("index", DEMO, "--out", tmp_path / "ix", "--model", exported_tiny)
    assert res.exit_code == 0, res.stderr
    assert json.loads((current_folder(tmp_path / "ix") / "manifest.json").read_text())["model"]["engine"] == "onnx"
    outs = []
    for model in (exported_tiny, tiny_model):
        res = invoke("query", "--index", tmp_path / "ix", "--model", model, "--steps", "3", "--format", "jsonl",
                     "Where is the football?")
        assert res.exit_code == 0, res.stderr
        outs.append([x["chunk"] for x in json.loads(res.stdout)["retrieved"]])
    assert outs[0] == outs[1]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_corrupt_and_incomplete_exports(exported_tiny, tmp_path):
    (tmp_path / "c.txt").write_text("Mary went to the garden. John went home.")
    broken = _copy(exported_tiny, tmp_path / "no-onnx")
    (broken / "model.onnx").unlink()
    res = invoke("index", tmp_path / "c.txt", "--out", tmp_path / "ix", "--model", broken)
    assert res.exit_code == 1 and "model.onnx is missing" in res.stderr and "qrag export" in res.stderr

    corrupt = _copy(exported_tiny, tmp_path / "corrupt")
    size = (corrupt / "model.onnx").stat().st_size
    (corrupt / "model.onnx").write_bytes(b"\x07garbage" * (size // 8) + b"x" * (size % 8))
    res = invoke("index", tmp_path / "c.txt", "--out", tmp_path / "ix", "--model", corrupt)
    assert res.exit_code == 1 and "model.onnx cannot be loaded" in res.stderr and "--overwrite" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

    truncated = _copy(exported_tiny, tmp_path / "truncated")
    (truncated / "model.onnx").write_bytes((truncated / "model.onnx").read_bytes()[:1000])
    res = invoke("index", tmp_path / "c.txt", "--out", tmp_path / "ix", "--model", truncated)
    assert res.exit_code == 1 and "truncated or replaced" in res.stderr

    no_tok = _copy(exported_tiny, tmp_path / "no-tok")
    (no_tok / "tokenizer.json").unlink()
    res = invoke("index", tmp_path / "c.txt", "--out", tmp_path / "ix", "--model", no_tok)
    assert res.exit_code == 1 and "tokenizer.json is missing" in res.stderr
    assert not (tmp_path / "ix").exists()


def test_exported_model_that_does_not_match_the_index(tmp_path, exported_tiny, other_tiny_model):
    res = invoke("index", DEMO, "--out", tmp_path / "ix", "--model", other_tiny_model)
    assert res.exit_code == 0, res.stderr
    res = invoke("query", "--index", tmp_path / "ix", "--model", exported_tiny, "q?")
    assert res.exit_code == 3 and "is not the model the index" in res.stderr and "re-index" in res.stderr
    res = invoke("query", "--index", tmp_path / "ix", "--model", "default", "q?")
    assert res.exit_code == 3 and "dimension" in res.stderr


def test_query_on_an_exported_model_never_imports_torch(tmp_path):
    res = invoke("index", DEMO, "--out", tmp_path / "ix")  # the default model: the cached ONNX export
    assert res.exit_code == 0, res.stderr
    code = (
        "import sys\n"
        "from qrag_cli.cli import main\n"
        f"sys.argv = ['qrag', 'query', '--index', {str(tmp_path / 'ix')!r}, '--steps', '2', 'Where is the football?']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr
    result = json.loads(proc.stdout)
    assert [x["text"] for x in result["retrieved"]] == ["Mary took the football there.", "Mary went to the garden."]
