"""No file a `qrag train --resume` reads can run code: a pickle payload in each one is refused, not run."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.errors import IncompatibleError
from qrag_cli.rl import trainer as trainer_mod
from qrag_cli.rl.checkpoint import verify_checkpoint
from qrag_cli.store.checksums import file_digest
from tests.test_rl import data, tiny_settings

runner = CliRunner()


class Payload:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload(marker: Path) -> bytes:
    blob = pickle.dumps({"updates": 2, "x": Payload(marker)})
    pickle.loads(blob)  # the payload works: unpickled, it runs its command
    assert marker.exists()
    marker.unlink()
    return blob


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, tiny_model):
    """A finished 2-update run to copy: (settings, run folder)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    s = tiny_settings(tmp, tiny_model, steps=2, val_every=2)
    trainer_mod.train(s, samples=data())
    return s, Path(s.out)


def fresh(run_folder, tmp_path):
    import shutil

    s, src = run_folder
    shutil.copytree(src, tmp_path / "run")
    return replace(s, out=str(tmp_path / "run"), resume=True, steps=4), tmp_path / "run" / "checkpoints" / "last"


def resign(last: Path) -> None:
    """Rewrite the manifest's checksums as an attacker who edits the folder would."""
    m = json.loads((last / "manifest.json").read_text())
    m["files"] = {p.relative_to(last).as_posix(): file_digest(p) for p in sorted(last.rglob("*"))
                  if p.is_file() and p.name != "manifest.json"}
    (last / "manifest.json").write_text(json.dumps(m))


def test_the_trainer_state_is_not_a_pickle_and_checkpoints_carry_checksums(run_folder):
    _, run = run_folder
    last = run / "checkpoints" / "last"
    assert not (last / "trainer.pt").exists() and (last / "trainer.json").is_file()
    assert (last / "trainer.safetensors").read_bytes()[:1] != b"\x80"  # not a pickle stream
    files = verify_checkpoint(last)["files"]
    assert {"trainer.json", "trainer.safetensors", "state/tokenizer.json"} <= set(files)


@pytest.mark.parametrize("where", ["trainer.pt in a checkpoint of an older version",
                                   "trainer.pt beside the new files", "trainer.safetensors",
                                   "trainer.safetensors with the manifest re-signed",
                                   "state/pytorch_model.bin", "settings.json", "trainer.json"])
def test_a_pickle_payload_in_any_file_a_resume_reads_does_not_run(run_folder, tmp_path, where):
    s, last = fresh(run_folder, tmp_path)
    marker = tmp_path / "PWNED"
    blob = payload(marker)
    if where.startswith("trainer.pt in"):  # an older run: trainer.pt, no checksums
        (last / "trainer.json").unlink()
        (last / "trainer.safetensors").unlink()
        torch.save({"updates": 2, "x": Payload(marker)}, last / "trainer.pt")
        m = json.loads((last / "manifest.json").read_text())
        del m["files"]
        (last / "manifest.json").write_text(json.dumps(m))
    elif where == "trainer.pt beside the new files":
        (last / "trainer.pt").write_bytes(blob)
    elif where.startswith("trainer.safetensors"):
        (last / "trainer.safetensors").write_bytes(blob)
        if "re-signed" in where:
            resign(last)
    elif where == "state/pytorch_model.bin":
        (last / "state" / "pytorch_model.bin").write_bytes(blob)
    elif where == "settings.json":
        (Path(s.out) / "settings.json").write_bytes(blob)
    else:
        (last / "trainer.json").write_bytes(blob)
        resign(last)
    with pytest.raises(IncompatibleError) as info:
        trainer_mod.train(s, samples=data())
    assert not marker.exists(), f"the payload in {where} ran"
    msg = str(info.value)
    assert str(last) in msg or str(Path(s.out) / "settings.json") in msg, msg


def test_a_garbage_settings_json_on_resume_is_exit_3_naming_it(run_folder, tmp_path):
    s, _ = fresh(run_folder, tmp_path)
    (Path(s.out) / "settings.json").write_text("{not json")
    res = runner.invoke(app, ["train", "--out", s.out, "--resume", "--steps", "4"])
    assert res.exit_code == 3, (res.exit_code, res.stderr)
    assert "settings.json" in res.stderr and res.stderr.startswith("error:") and res.stderr.count("\n") == 1
