"""What `qrag train` trains on: task names, settings resolution (presets, RULER lengths, --resume) and samples.

Kept apart from the trainer (`trainer.py`), which holds the rollout, the returns, the loss and the
target update.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ..errors import IncompatibleError, InputError
from ..settings import TrainSettings
from ..versioned import read_json_object

BABILONG_TASKS = tuple(f"babilong:qa{i}" for i in range(1, 6))
RULER_TASKS = ("ruler:niah_multivalue", "ruler:vt")
TRAIN_DEFAULT_LENGTH = TrainSettings().length
#: RULER training contexts: 4K tokens of the training novels (about 150 sentences with the needles)
RULER_TRAIN_LENGTH = "4K"
#: Settings a resumed run may change (everything else must match the run's settings.json; "out": a run folder may move).
RESUMABLE_CHANGES = ("out", "resume", "overwrite", "steps", "threads", "val_every")


# --- settings, data -------------------------------------------------------------------------------


def default_run_folder(task: str) -> Path:
    """Where a run goes without --out: runs/<task>."""
    return Path("runs") / task.replace(":", "-")


def check(s: TrainSettings) -> TrainSettings:
    """The resolved settings (preset applied, output folder defaulted); InputError on anything unusable."""
    s = s.resolve_preset()
    if s.task not in BABILONG_TASKS + RULER_TASKS:
        raise InputError(f"unknown task {s.task!r}: use one of {', '.join(BABILONG_TASKS + RULER_TASKS)}")
    if s.task in RULER_TASKS:
        from ..data.ruler import RULER_LENGTHS

        if s.length == TRAIN_DEFAULT_LENGTH:  # the babilong default: ruler contexts are measured in tokens
            s = replace(s, length=RULER_TRAIN_LENGTH)
        if s.length not in RULER_LENGTHS or RULER_LENGTHS[s.length] > RULER_LENGTHS[RULER_TRAIN_LENGTH]:
            raise InputError(f"ruler training length {s.length!r}: use {RULER_TRAIN_LENGTH} (contexts of about "
                             "100 sentences, like babilong's training contexts)")
    for name in ("steps", "n_train", "n_val", "batch_size", "n_envs", "soft_top", "piece_tokens", "val_every"):
        if getattr(s, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if s.positions not in ("int", "float"):
        raise InputError(f"unknown positions {s.positions!r}: use 'int' or 'float'")
    if s.alpha_schedule not in ("constant", "lr"):
        raise InputError(f"unknown alpha schedule {s.alpha_schedule!r}: use 'constant' or 'lr'")
    if not (s.lr > 0 and s.alpha > 0 and s.scale > 0 and 0 <= s.lam <= 1 and 0 <= s.gamma <= 1 and 0 < s.tau <= 1):
        raise InputError("--lr, --alpha and --scale must be > 0; --lam and --gamma in [0, 1]; --tau in (0, 1]")
    if min(s.train_state_layers, s.train_action_layers, s.max_steps, s.warmup_updates) < 0:
        raise InputError("--train-state-layers, --train-action-layers, --max-steps and --warmup-updates must be >= 0")
    if s.train_action_layers and s.freeze_action:
        raise InputError("--train-action-layers trains part of the action encoder: add --no-freeze-action "
                         "(the cpu preset freezes it)")
    if s.mined_negatives < 0:
        raise InputError("--mined-negatives must be >= 0")
    if s.mined_negatives and (s.task not in BABILONG_TASKS or not s.freeze_action):
        raise InputError("--mined-negatives needs a babilong task and the frozen action encoder (--freeze-action, "
                         "as in the cpu preset): the mined sentences are ranked by the base model's vectors")
    if s.init and not s.resume and not (Path(s.init) / "manifest.json").is_file():  # a resume has its own weights
        raise InputError(f"--init {s.init}: not a checkpoint folder (give RUN/checkpoints/last or best)")
    if not s.out:
        s = replace(s, out=str(default_run_folder(s.task)))
    return s


def base_model_path(model: str) -> Path:
    """The PyTorch folder of the base model ('default' is the bundled all-MiniLM-L6-v2)."""
    from ..embed.models import default_model_path, resolve_model

    if model in ("", "default", "default:torch", "all-MiniLM-L6-v2"):
        return default_model_path()
    spec = resolve_model(model)
    if spec.engine != "torch":
        raise InputError(f"{model} is an exported ONNX model: training needs a PyTorch (Hugging Face) folder")
    return spec.path


def make_samples(s: TrainSettings) -> tuple[list[dict], list[dict]]:
    """(training, validation) samples of the task, both from the 'train' split; validation is the tail."""
    from ..data.generate import generate
    from ..settings import DataSettings

    bench, task = s.task.split(":")
    _, samples = generate(DataSettings(benchmark=bench, task=task, length=s.length, n=s.n_train + s.n_val,
                                       split="train", seed=s.seed, hard_negatives=s.hard_negatives,
                                       background_pool=s.background_pool))
    if any("context" not in x for x in samples):
        raise InputError(f"length {s.length!r} is too long for training contexts: use a number of sentences below 1200")
    return samples[: s.n_train], samples[s.n_train :]


def resumed_settings(settings: TrainSettings) -> TrainSettings:
    """`--resume` settings: every option left at its default takes the run's value (settings.json), so
    `qrag train --out RUN --resume --steps N` continues the run as it was; an option given with
    another value than the run's is refused (unless it is one of RESUMABLE_CHANGES)."""
    path = Path(settings.out) / "settings.json"
    saved = read_json_object(path, IncompatibleError, "the run folder is damaged")
    defaults = asdict(TrainSettings())
    merged, diff = {}, []
    for k, v in asdict(settings).items():
        if k in RESUMABLE_CHANGES or k not in saved:
            merged[k] = v
        elif v == defaults[k]:
            merged[k] = saved[k]
        else:
            merged[k] = v
            if v != saved[k]:
                diff.append(f"{k} ({saved[k]!r} in the run, {v!r} now)")
    if diff:
        raise InputError(f"--resume with settings that differ from {path}: {', '.join(diff)}")
    return TrainSettings(**merged)
