"""The policy shipped with qrag (`policy:default`): it loads, matches its manifest, its ONNX export gives
the PyTorch path's vectors, and `qrag query` on an index built with the base model uses it by default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli.api import open_session
from qrag_cli.cli import app
from qrag_cli.embed.encoder import load_encoder
from qrag_cli.embed.models import WEIGHT_FILES, default_model_path, file_sha256, resolve_roles
from qrag_cli.policy import artefact
from qrag_cli.settings import QuerySettings

SHIPPED = artefact.SHIPPED_ROOT / "default"
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.txt"
pytestmark = pytest.mark.slow


def test_the_shipped_policy_matches_its_manifest_and_is_small():
    m = artefact.read_manifest(SHIPPED)
    delta = SHIPPED / m["state"]["delta"]["file"]
    assert delta.stat().st_size == m["state"]["delta"]["bytes"] <= 20 * 2**20
    assert file_sha256(delta) == m["state"]["delta"]["sha256"]
    assert m["base"]["checksum"] == file_sha256(default_model_path() / WEIGHT_FILES[0])  # the installed base
    assert m["training"]["command"].startswith("qrag train ") and m["validation"]["val_select"] > 0
    assert m["pooling"]["state"]["positions"] == "int" and m["state"]["layers"]
    assert sorted(p.name for p in SHIPPED.iterdir()) == ["manifest.json", m["state"]["delta"]["file"]]


def test_the_onnx_export_gives_the_pytorch_vectors():
    states = [["Where is the football?"], ["Where is the football?", "Mary took the football there."],
              ["What is the apple in?", "John grabbed the apple there.", "John travelled to the office."]]
    torch_state = resolve_roles("policy:default:torch")[0]
    onnx_state, onnx_action = resolve_roles("policy:default")
    assert onnx_state.engine == "onnx" and torch_state.engine == "torch"
    assert onnx_action.checksum == file_sha256(default_model_path() / WEIGHT_FILES[0])
    want = load_encoder(torch_state).encode_states(states)
    got = load_encoder(onnx_state).encode_states(states)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_query_on_a_base_built_index_uses_the_shipped_policy_by_default(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["index", str(DEMO), "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.stderr
    session = open_session(QuerySettings(index=str(tmp_path / "demo"), steps=2))
    assert session.model == "policy:default"
    assert session.encoder.spec.pooling.positions == "int"  # the trained state encoder, with positions
    ask = ["--index", str(tmp_path / "demo"), "--steps", "2", "--format", "jsonl", "Where is the football?"]
    default = json.loads(runner.invoke(app, ["query", *ask]).stdout)
    explicit = json.loads(runner.invoke(app, ["query", *ask, "--model", "policy:default"]).stdout)
    untrained = json.loads(runner.invoke(app, ["query", *ask, "--model", "default"]).stdout)
    assert default["retrieved"] == explicit["retrieved"]
    assert [r["score"] for r in default["retrieved"]] != [r["score"] for r in untrained["retrieved"]]
