"""The run folder of `qrag train` and the policy folders it writes.

    RUN/settings.json              the resolved TrainSettings
    RUN/metrics.jsonl              one JSON line per update (validation every K updates)
    RUN/checkpoints/last/          policy folder + trainer.json / trainer.safetensors (what --resume
                                   continues from; runs of older versions have trainer.pt instead)
    RUN/checkpoints/best/          policy folder of the best validation (coverage within the
                                   episode's steps, then in the minimum steps; later wins ties)

A policy folder: `manifest.json` {"format": "qrag-policy", "format_version": 1, "base", "updates",
"val_coverage"} and `state/`, `action/`, each a Hugging Face model folder with tokenizer.json and
qrag_pooling.json. The manifest's `files` records the size and XXH3 checksum of every other file of
the folder; a checkpoint is verified against it before anything is loaded, and a file it does not
list is refused. Every checkpoint is written to a temporary folder and renamed into place.

No pickle is ever read: the trainer state is safetensors + JSON (`state_io`), and the `trainer.pt` of
older runs is read with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import filecmp
import json
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..atomic import build_folder, write_bytes_atomic, write_json_atomic
from ..embed.models import POLICY_FORMAT
from ..errors import CorruptIndexError, InputError, OutputExistsError
from ..store.checksums import file_digest, verify_file
from ..store.manifest import safe_name
from ..versioned import read_versioned
from .qnet import QNet
from .state_io import STATE_JSON, load_state, save_state

POLICY_FORMAT_VERSION = 1
TRAINER_FILE = "trainer.pt"  # the pickled trainer state of older versions (read with weights_only=True)
MANIFEST = "manifest.json"


class CorruptCheckpointError(CorruptIndexError):
    """A checkpoint folder is incomplete, edited or of an unknown format."""


def check_run(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an existing run folder unless resuming or overwriting; a resume needs checkpoints/last."""
    if resume:
        if not (out / "checkpoints" / "last").is_dir():
            raise InputError(f"nothing to resume in {out}: no checkpoints/last (run without --resume first)")
        return
    if out.exists():
        if not overwrite:
            raise OutputExistsError(f"run folder {out} exists: use --resume to continue it or --overwrite to replace it")
        if out.is_dir() and any(out.iterdir()) and not (out / "settings.json").is_file():
            raise OutputExistsError(f"{out} exists and is not a qrag run folder (no settings.json): not replacing it")


def prepare_run(out: Path, *, resume: bool, overwrite: bool) -> None:
    """`check_run`, then (a new run) replace an overwritten folder and create the run folder."""
    check_run(out, resume=resume, overwrite=overwrite)
    if resume:
        return
    if out.exists():
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    out.mkdir(parents=True)


def write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj, sort_keys=True)


def save_policy(folder: Path, net: QNet, base: str, updates: int, val_coverage: float | None,
                trainer_state: dict[str, Any] | None = None) -> None:
    """Write a policy folder (and the trainer state when given) atomically: temp folder, then rename."""

    def fill(tmp: Path) -> None:
        for side in ("state", "action"):
            (tmp / side).mkdir()
            net.save_policy_side(tmp / side, side)
        if trainer_state is not None:
            save_state(tmp, trainer_state)
        files = {p.relative_to(tmp).as_posix(): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / MANIFEST, {"format": POLICY_FORMAT, "format_version": POLICY_FORMAT_VERSION,
                                    "base": base, "updates": updates, "val_coverage": val_coverage,
                                    "files": files})

    build_folder(folder, fill)


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_versioned(folder / MANIFEST, POLICY_FORMAT, POLICY_FORMAT_VERSION, CorruptCheckpointError,
                          "the checkpoint is incomplete or from another qrag version")


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """The manifest of a checkpoint whose files all match it (sizes, checksums, nothing unlisted).

    A checkpoint of an older version has no `files`: it is loaded without this check (its weights are
    safetensors and its trainer state is read with weights_only=True, so it cannot run code)."""
    manifest = read_manifest(folder)
    files = manifest.get("files")
    if files is None:
        return manifest
    fix = "the checkpoint was edited or damaged"
    if not isinstance(files, dict):
        raise CorruptCheckpointError(f"{folder / MANIFEST} is damaged: 'files' is not an object")
    for name, info in files.items():
        if not all(safe_name(part) for part in str(name).split("/")) or not isinstance(info, dict):
            raise CorruptCheckpointError(f"{folder / MANIFEST} is damaged: bad entry {name!r} in 'files'")
        verify_file(folder / name, info, fix)
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        if (p.is_file() or p.is_symlink()) and rel != MANIFEST and rel not in files:
            raise CorruptCheckpointError(f"{p} is not listed in {folder / MANIFEST}: {fix}")
    return manifest


def load_checkpoint(folder: Path, net: QNet) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the weights of a checkpoint into `net`: (manifest, trainer state). Raises CorruptCheckpointError."""
    manifest = verify_checkpoint(folder)
    try:
        _load_sides(folder, net, ("state", "action"))
        if (folder / STATE_JSON).is_file():
            trainer_state = load_state(folder, CorruptCheckpointError)
        else:  # a run of an older version: the pickle is read without running any code it holds
            trainer_state = torch.load(folder / TRAINER_FILE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        raise CorruptCheckpointError(f"checkpoint {folder} is corrupt or incomplete: {exc}") from exc
    if not isinstance(trainer_state, dict) or trainer_state.get("updates") != manifest.get("updates"):
        raise CorruptCheckpointError(f"checkpoint {folder}: its trainer state does not match manifest.json")
    return manifest, trainer_state


def _load_sides(folder: Path, net: QNet, sides: tuple[str, ...]) -> None:
    from transformers import AutoModel

    for side in sides:
        loaded = AutoModel.from_pretrained(str(folder / side), local_files_only=True)
        getattr(net, side).load_state_dict(loaded.state_dict())


def init_from(folder: Path, net: QNet) -> None:
    """Start `net` from the encoders of another run's checkpoint (`--init`).

    A frozen action encoder must stay the base model's (its index is the base index), so with one only
    the state side is loaded, and a checkpoint whose action encoder was trained is refused. A compact
    policy (`policy:default`, a compact folder: `policy/artefact.py`) gives its state encoder."""
    from ..policy.artefact import split_name, state_weights

    compact = split_name(str(folder))
    if compact is not None:
        _, weights = state_weights(compact[0], net.base)  # refuses a policy of another base model
        try:
            net.state.load_state_dict(weights, strict=False)
        except RuntimeError as exc:
            raise InputError(f"--init {folder}: cannot load its state encoder into this run's model: {exc}") from exc
        return
    manifest = read_manifest(folder)
    if manifest.get("engine") == "onnx":
        raise InputError(f"--init {folder} is an exported (ONNX) policy: give the run's checkpoint folder "
                         "(RUN/checkpoints/last or best)")
    verify_checkpoint(folder)
    if net.freeze_action:
        weights = folder / "action" / net.spec.weights.name
        if not weights.is_file() or not filecmp.cmp(weights, net.spec.weights, shallow=False):
            raise InputError(f"--init {folder}: its action encoder was trained (or is not the base model's); "
                             "a run with a frozen action encoder would drop it: add --no-freeze-action")
    try:
        _load_sides(folder, net, ("state",) if net.freeze_action else ("state", "action"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"--init {folder}: cannot load its encoders into this run's base model "
                         f"(a checkpoint of another base model?): {exc}") from exc


def _metric_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line, row) of each metrics line, up to the first unreadable one (a line cut by a crash)."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            yield line, json.loads(line)
        except ValueError:
            return


def truncate_metrics(path: Path, updates: int) -> None:
    """Keep the metric lines of updates <= `updates` (a resumed run rewrites what followed its checkpoint)."""
    if not path.is_file():
        return
    keep = [line for line, row in _metric_lines(path) if row.get("update", 0) <= updates]
    write_bytes_atomic(path, "".join(k + "\n" for k in keep).encode("utf-8"))


def validation_row(path: Path, updates: int) -> dict[str, Any] | None:
    """The metrics line of the validation at `updates`, if the file has one."""
    return next((row for _, row in _metric_lines(path)
                 if row.get("update") == updates and "val_coverage_max_steps" in row), None)
