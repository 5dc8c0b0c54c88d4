"""The compact policy artefact (`qrag export RUN/checkpoints/best --compact`): what a run trained and
nothing else, round-tripped; its refusals; serving it through query, export and --init."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.errors import ModelMismatchError
from qrag_cli.policy import artefact
from qrag_cli.rl import trainer as trainer_mod
from tests.test_rl import data, rows, tiny_settings

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    """A tiny frozen-action run whose top state layer is trained (the shape of the shipped policy)."""
    tmp = tmp_path_factory.mktemp("compact")
    s = tiny_settings(tmp, tiny_model, steps=4, val_every=4, freeze_action=True, train_state_layers=1)
    trainer_mod.train(s, samples=data())
    return tmp / "run"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QRAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def compact_of(run, out):
    res = runner.invoke(app, ["export", str(run / "checkpoints" / "best"), "--compact", "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    return out


def test_the_compact_policy_holds_only_the_trained_layers_and_rebuilds_the_state_encoder(run, tmp_path, cache):
    out = compact_of(run, tmp_path / "pol")
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "qrag-compact-policy" and m["format_version"] == 1
    assert m["state"]["layers"] == [1]  # the tiny model has two layers; the top one was trained
    assert all(t.startswith("encoder.layer.1.") for t in m["state"]["tensors"])
    assert m["pooling"]["state"]["positions"] == "int" and m["pooling"]["action"]["normalize"] is True
    assert m["training"]["command"].startswith("qrag train --preset reference")
    assert "val_coverage_max_steps" in m["validation"] and m["updates"] == m["validation"]["update"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "state-delta.safetensors"]
    full = run / "checkpoints" / "best" / "state" / "model.safetensors"
    assert (out / "state-delta.safetensors").stat().st_size < full.stat().st_size / 2

    # round trip: the rebuilt state encoder gives the full checkpoint's state vectors
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import resolve_model, resolve_roles

    states = [["where is the treasure?"], ["where is the treasure?", "apple river stone cloud"]]
    want = load_encoder(resolve_model(run / "checkpoints" / "best" / "state")).encode_states(states)
    for variant in ("torch", "fp32"):
        state, action = resolve_roles(f"{out}:{variant}")
        assert state.pooling.positions == "int" and action.checksum == resolve_model(run / "checkpoints" / "best" / "action").checksum
        got = load_encoder(state).encode_states(states)
        np.testing.assert_allclose(got, want, atol=2e-3)  # float16 delta, and ONNX against PyTorch
    assert (cache / "policies").is_dir()


def test_init_from_a_compact_policy_starts_from_its_weights(run, tmp_path, tiny_model, cache):
    out = compact_of(run, tmp_path / "pol")
    s = tiny_settings(tmp_path / "b", tiny_model, steps=1, val_every=1, freeze_action=True, train_state_layers=1,
                      init=str(out))
    trainer_mod.train(s, samples=data())
    before = [r for r in rows(run) if r.get("update") == json.loads((out / "manifest.json").read_text())["updates"]]
    assert rows(tmp_path / "b" / "run")[0]["val_q_first"] == pytest.approx(before[0]["val_q_first"], abs=2e-3)
    record = artefact.training_record(tmp_path / "b" / "run" / "checkpoints" / "last")[0]
    assert record["chain"] == [json.loads((out / "manifest.json").read_text())["training"]["command"]]


def test_damaged_foreign_or_mismatched_policies_are_refused_with_exit_3(run, tmp_path, cache, other_tiny_model):
    out = compact_of(run, tmp_path / "pol")
    ix = tmp_path / "demo.txt"
    ix.write_text("Mary took the football there. John went to the office. Mary went to the garden.")

    def query(model):
        return runner.invoke(app, ["query", "--index", str(tmp_path / "ix"), "--model", model, "Where is Mary?"])

    base = json.loads((run / "checkpoints" / "best" / "manifest.json").read_text())["base"]
    assert runner.invoke(app, ["index", str(ix), "--out", str(tmp_path / "ix"), "--model", base]).exit_code == 0
    assert query(str(out)).exit_code == 0

    flipped = tmp_path / "flipped"
    shutil.copytree(out, flipped)
    raw = bytearray((flipped / "state-delta.safetensors").read_bytes())
    raw[-3] ^= 0xFF
    (flipped / "state-delta.safetensors").write_bytes(bytes(raw))
    res = query(str(flipped))
    assert res.exit_code == 3 and "state-delta.safetensors" in res.stderr and "checksum" in res.stderr

    future = tmp_path / "future"
    shutil.copytree(out, future)
    m = json.loads((future / "manifest.json").read_text())
    (future / "manifest.json").write_text(json.dumps({**m, "format_version": 2}))
    res = query(str(future))
    assert res.exit_code == 3 and "format version" in res.stderr.replace("format_version", "format version")

    other = tmp_path / "other-base"
    shutil.copytree(out, other)
    m = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**m, "base": {**m["base"], "ref": str(other_tiny_model)}}))
    with pytest.raises(ModelMismatchError, match="installed base model"):
        artefact.state_weights(other)
    res = query(str(other))
    assert res.exit_code == 3 and "trained on" in res.stderr

    res = runner.invoke(app, ["export", str(run / "checkpoints" / "best"), "--compact", "--out", str(out)])
    assert res.exit_code == 2  # an existing folder is never replaced without --overwrite
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me")
    res = runner.invoke(app, ["export", str(run / "checkpoints" / "best"), "--compact", "--out", str(notes),
                              "--overwrite"])
    assert res.exit_code == 2 and (notes / "mine.txt").read_text() == "keep me"  # not a compact policy: kept
