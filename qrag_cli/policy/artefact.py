"""The compact policy artefact: what a run trained, and nothing else.

With the action encoder frozen (the `cpu` preset), a policy is the base model plus its trained top
state layers. A compact policy is a folder of two files:

    manifest.json          {"format": "qrag-compact-policy", "format_version": 1, ...}
    state-delta.safetensors  trained - base, float16, for exactly the trained state-encoder tensors

The manifest records the base model (name, SHA-256 of its weights file), the trained layers and
tensors, the state and action pooling (with the rotary positions), the delta file's size and SHA-256,
the training command and its resolved settings (and, for a run started with `--init`, the chain of
commands before it), the per-task validation figures of the checkpoint and the qrag version.

Loading checks the format version, the base model's checksum (a policy of another base model is
refused) and the delta's checksum, then rebuilds the state encoder as base + delta. To serve it the
policy is materialised once into the user cache (`$QRAG_CACHE/policies/<sha>/`): a full policy folder
(`state/` + `action/`, the format of `rl/checkpoint.py`) and its ONNX export (fp32 or int8), whose
action side is the default model's own export (the frozen action encoder *is* the base model).

`policy:default` is the policy shipped inside the package (`qrag_cli/policies/default/`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import build_folder, write_json_atomic
from ..embed.export import export_policy_with_base_action  # noqa: F401  (also the API's)
from ..embed.models import (DEFAULT_MODEL_NAME, POLICY_FORMAT, cache_root, default_model_path, file_sha256)
from ..errors import CorruptIndexError, InputError, ModelLoadError, ModelMismatchError
from ..versioned import read_versioned

FORMAT = "qrag-compact-policy"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DELTA_FILE = "state-delta.safetensors"
#: The name prefix of a shipped policy: `policy:default` is the package's `policies/default`.
SHIPPED_PREFIX = "policy:"
SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "policies"
VARIANTS = ("fp32", "int8", "torch")


class CorruptPolicyError(CorruptIndexError):
    """A compact policy is incomplete, edited, or of an unknown format version (exit 3)."""


# --- names -------------------------------------------------------------------------------------


def shipped(name: str) -> Path:
    """The folder of a shipped policy, e.g. 'default' -> qrag_cli/policies/default."""
    folder = SHIPPED_ROOT / name
    if not (folder / MANIFEST).is_file():
        known = sorted(p.name for p in SHIPPED_ROOT.iterdir() if (p / MANIFEST).is_file()) if SHIPPED_ROOT.is_dir() else []
        raise ModelLoadError(f"no shipped policy {name!r}: use one of {', '.join('policy:' + k for k in known) or '(none)'}")
    return folder


def split_name(model: str) -> tuple[Path, str] | None:
    """(compact folder, variant) if `model` names a compact policy ('policy:NAME[:fp32|int8|torch]' or a
    folder with a compact manifest, optionally ':VARIANT'), else None."""
    text = str(model)
    variant = "fp32"
    if text.startswith(SHIPPED_PREFIX):
        parts = text[len(SHIPPED_PREFIX):].split(":")
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in VARIANTS):
            raise ModelLoadError(f"{text!r}: use policy:NAME, policy:NAME:int8 or policy:NAME:torch")
        return shipped(parts[0] or "default"), parts[1] if len(parts) == 2 else variant
    head, _, tail = text.rpartition(":")
    if head and tail in VARIANTS and is_compact(Path(head)):
        return Path(head), tail
    return (Path(text), variant) if is_compact(Path(text)) else None


def is_compact(folder: Path) -> bool:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# --- reading ------------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The validated manifest of a compact policy (CorruptPolicyError on a damaged or foreign one)."""
    m = read_versioned(folder / MANIFEST, FORMAT, FORMAT_VERSION, CorruptPolicyError,
                       "this qrag reads compact policies of format version 1: use the qrag that wrote it")
    try:
        delta = m["state"]["delta"]
        ok = (isinstance(delta["file"], str) and isinstance(delta["bytes"], int) and isinstance(delta["sha256"], str)
              and isinstance(m["base"]["checksum"], str) and isinstance(m["pooling"]["state"], dict)
              and isinstance(m["pooling"]["action"], dict))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise CorruptPolicyError(f"{folder / MANIFEST} lacks base.checksum, state.delta (file, bytes, sha256) or "
                                 "pooling: the policy is damaged")
    if Path(delta["file"]).name != delta["file"]:
        raise CorruptPolicyError(f"{folder / MANIFEST}: the delta file {delta['file']!r} must be a name inside the folder")
    return m


def base_folder(m: dict[str, Any]) -> Path:
    """The base model folder a compact policy names: 'default' (the bundled model) or a folder."""
    ref = m["base"].get("ref", "default")
    return default_model_path() if ref in ("default", DEFAULT_MODEL_NAME) else Path(ref)


def check_base(m: dict[str, Any], folder: Path, base: Path | None = None) -> Path:
    """The base model folder, after checking it is the one the policy was trained on."""
    base = base or base_folder(m)
    weights = base / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{base} has no model.safetensors: a compact policy needs its base model's weights")
    have = file_sha256(weights)
    if have != m["base"]["checksum"]:
        raise ModelMismatchError(
            f"policy {folder} was trained on {m['base'].get('name', '?')} (sha256 {m['base']['checksum'][:12]}), "
            f"but the installed base model is sha256 {have[:12]}: install the base model it names, or retrain")
    return base


def state_weights(folder: Path, base: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, full state-encoder state dict: base + delta, float32). Checks base and delta checksums."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    m = read_manifest(folder)
    base = check_base(m, folder, base)
    delta_path = verified_delta(folder, m)
    try:
        delta = load_file(str(delta_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptPolicyError(f"{delta_path} is not a readable safetensors file: {exc}") from exc
    full = load_file(str(base / "model.safetensors"))
    unknown = sorted(set(delta) - set(full))
    if unknown:
        raise CorruptPolicyError(f"{delta_path} holds tensors the base model has not: {', '.join(unknown[:3])}")
    for name, d in delta.items():
        if d.shape != full[name].shape:
            raise CorruptPolicyError(f"{delta_path}: {name} has shape {tuple(d.shape)}, the base {tuple(full[name].shape)}")
        full[name] = (full[name].float() + d.float()).to(full[name].dtype) if full[name].is_floating_point() \
            else full[name]
    return m, full


def verified_delta(folder: Path, m: dict[str, Any]) -> Path:
    """The delta file, after checking its size and SHA-256 against the manifest (every load and every
    use of a cached export: ~10 ms for 14 MB)."""
    delta_path = folder / m["state"]["delta"]["file"]
    if not delta_path.is_file():
        raise CorruptPolicyError(f"{delta_path} is missing: the policy is incomplete")
    if delta_path.stat().st_size != m["state"]["delta"]["bytes"] or file_sha256(delta_path) != m["state"]["delta"]["sha256"]:
        raise CorruptPolicyError(f"{delta_path} does not match the size and checksum in {folder / MANIFEST}: "
                                 "the file is damaged or was replaced")
    return delta_path


# --- writing ------------------------------------------------------------------------------------


def write_compact(checkpoint: Path, out: Path, *, overwrite: bool = False, training: dict[str, Any] | None = None,
                  validation: dict[str, Any] | None = None) -> Path:
    """Write the compact policy of a training checkpoint (`RUN/checkpoints/best`, a qrag-policy folder
    whose action side is the frozen base model) to `out`. `training` (command, settings, chain) and
    `validation` (per-task figures) go into the manifest."""
    from safetensors.torch import load_file, save_file

    from ..rl.checkpoint import read_manifest as read_policy_manifest

    checkpoint, out = Path(checkpoint), Path(out)
    policy = read_policy_manifest(checkpoint)
    if out.exists() and not (overwrite and is_compact(out)):
        raise InputError(f"{out} exists" + (" and is not a compact policy: not replacing it" if out.exists() and
                                            overwrite else ": choose another --out or pass --overwrite"))
    base = Path(policy.get("base") or default_model_path())
    base_weights = base / "model.safetensors"
    ref = "default" if base.resolve() == default_model_path().resolve() else str(base.resolve())
    action = checkpoint / "action" / "model.safetensors"
    if not action.is_file() or file_sha256(action) != file_sha256(base_weights):
        raise InputError(f"{checkpoint}: its action encoder is not the base model (trained with --no-freeze-action): "
                         "a compact policy holds state layers only; keep the full policy folder")
    trained = load_file(str(checkpoint / "state" / "model.safetensors"))
    base_sd = load_file(str(base_weights))
    delta = {}
    for name, w in trained.items():
        key = name if name in base_sd else name.removeprefix("bert.")
        if key not in base_sd:
            raise InputError(f"{checkpoint}: state tensor {name} is not in the base model {base}")
        if w.is_floating_point() and not bool((w == base_sd[key]).all()):
            delta[key] = (w.float() - base_sd[key].float()).half().contiguous()
    layers = sorted({int(k.split(".")[2]) for k in delta if k.startswith("encoder.layer.")})
    pooling = {side: json.loads((checkpoint / side / "qrag_pooling.json").read_text(encoding="utf-8"))
               for side in ("state", "action")}

    def fill(tmp: Path) -> None:
        save_file(delta, str(tmp / DELTA_FILE), metadata={"format": FORMAT, "storage": "delta-float16"})
        write_json_atomic(tmp / MANIFEST, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "qrag_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base": {"name": DEFAULT_MODEL_NAME if ref == "default" else base.name, "ref": ref,
                     "checksum": file_sha256(base_weights)},
            "state": {"layers": layers, "tensors": sorted(delta),
                      "delta": {"file": DELTA_FILE, "dtype": "float16", "storage": "trained - base",
                                "bytes": (tmp / DELTA_FILE).stat().st_size, "sha256": file_sha256(tmp / DELTA_FILE)}},
            "action": "base",
            "pooling": pooling,
            "updates": policy.get("updates"),
            "training": training or {},
            "validation": validation or {},
        }, sort_keys=True)

    if out.exists():
        shutil.rmtree(out)
    return build_folder(out, fill)


# --- serving ------------------------------------------------------------------------------------


def cache_folder(m: dict[str, Any], variant: str) -> Path:
    """Where a compact policy is served from: keyed by its delta's checksum and its base model's folder."""
    import hashlib

    key = hashlib.sha256(f"{m['state']['delta']['sha256']}|{base_folder(m).resolve()}".encode()).hexdigest()[:16]
    return cache_root() / "policies" / f"{key}-{variant}"


def check_cached_base(m: dict[str, Any], folder: Path) -> None:
    """A cached serving folder is used while the base weights file is unchanged (path, size, mtime as
    recorded when the folder was made, cheap); otherwise the base is hashed and checked again."""
    weights = base_folder(m) / "model.safetensors"
    stamp_file = cache_folder(m, "stamp").with_suffix(".json")
    st = weights.stat() if weights.is_file() else None
    stamp = {"path": str(weights), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns} if st else None
    try:
        if stamp is not None and json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
            return
    except (OSError, ValueError):
        pass
    check_base(m, folder)
    if stamp is not None:
        write_json_atomic(stamp_file, stamp)


def _made_once(dest: Path, m: dict[str, Any], folder: Path, make: Callable[[], Path]) -> Path:
    """`dest` if a finished copy is there (its base model still the one checked), else `make()`; a
    concurrent first use that finished first wins."""
    if (dest / "manifest.json").is_file():
        check_cached_base(m, folder)
        return dest
    try:
        return make()
    except OSError:
        if (dest / "manifest.json").is_file():
            return dest
        raise


def materialise(folder: Path, dest: Path | None = None) -> Path:
    """A full policy folder (state/ + action/, `rl/checkpoint.py`'s format) of the compact policy, made once
    into the cache (or `dest`); returns it."""
    m = read_manifest(folder)
    dest = dest or cache_folder(m, "torch")
    return _made_once(dest, m, folder, lambda: _write_full(folder, m, dest))


def _write_full(folder: Path, m: dict[str, Any], dest: Path) -> Path:
    _, weights = state_weights(folder)
    base = base_folder(m)

    def fill(tmp: Path) -> None:
        from safetensors.torch import save_file

        for side in ("state", "action"):
            (tmp / side).mkdir()
            for name in ("config.json", "tokenizer.json"):
                shutil.copy(base / name, tmp / side / name)
            (tmp / side / "qrag_pooling.json").write_text(json.dumps(m["pooling"][side]), encoding="utf-8")
        save_file(weights, str(tmp / "state" / "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(base / "model.safetensors", tmp / "action" / "model.safetensors")
        write_json_atomic(tmp / "manifest.json", {"format": POLICY_FORMAT, "format_version": 1, "base": str(base),
                                                  "updates": m.get("updates"), "val_coverage": None,
                                                  "compact": str(folder)}, sort_keys=True)

    return build_folder(dest, fill)


def serving_folder(folder: Path, variant: str = "fp32", announce: Any = None) -> Path:
    """The policy folder that serves `folder` as `variant`: the materialised PyTorch folder ('torch'), or
    its ONNX export (fp32 / int8), made once into the cache on first use. `announce(message)` is told
    before a slow one-time step."""
    m = read_manifest(folder)
    verified_delta(folder, m)
    if variant == "torch":
        return materialise(folder)
    dest = cache_folder(m, variant)

    def export() -> Path:
        import time

        if announce:
            announce(f"exporting policy {folder.name} to ONNX ({variant}) into {dest.parent} (once)")
        t0 = time.perf_counter()
        made = export_policy_with_base_action(materialise(folder), dest, int8=variant == "int8")
        if announce:
            announce(f"exported policy {folder.name} ({variant}) in {time.perf_counter() - t0:.0f} s")
        return made

    return _made_once(dest, m, folder, export)


def training_record(checkpoint: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training, validation) of a run's checkpoint for the manifest: the command that trained it and its
    resolved settings, the chain of commands before it (a run started with --init), and the per-task
    validation figures of the checkpoint's update (from the run's metrics.jsonl)."""
    from ..rl.checkpoint import read_manifest as read_policy_manifest
    from ..rl.checkpoint import validation_row
    from ..rl.tasks import command_line

    run = Path(checkpoint).parent.parent
    settings_file = run / "settings.json"
    if not settings_file.is_file():
        return {}, {}
    try:
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{settings_file} is not valid JSON: {exc}") from exc
    chain: list[str] = []
    init = settings.get("init") or ""
    if init:
        compact = split_name(init)
        if compact is not None:
            before = read_manifest(compact[0]).get("training", {})
            chain = [*before.get("chain", []), before.get("command", f"(unrecorded: {init})")]
        else:
            earlier = Path(init).parent.parent / "settings.json"
            chain = [command_line(json.loads(earlier.read_text(encoding="utf-8"))) if earlier.is_file()
                     else f"(unrecorded: --init {init})"]
    updates = read_policy_manifest(Path(checkpoint)).get("updates", -1)
    row = validation_row(run / "metrics.jsonl", updates) or {}
    validation = {k: v for k, v in row.items() if k.startswith("val_") or k == "update"}
    return {"command": command_line(settings), "settings": settings, "chain": chain}, validation
