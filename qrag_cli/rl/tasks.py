"""What `qrag train` trains on: task names, the task mixture, settings resolution (presets, RULER lengths,
--resume) and samples (generated, or a user's `--data` file).

Kept apart from the trainer (`trainer.py`), which holds the rollout, the returns, the loss and the
target update.

A run trains one policy on a **mixture**: `--task` is a comma list of built-in tasks (`all`: every one),
`--data FILE` adds a user's samples as one more task named `data`, and each new training episode first
draws its task with probability proportional to `--task-weights` (default: equal), then one of that
task's samples uniformly. Validation reports every task on its own (`rl/selection.py` picks `best`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import IncompatibleError, InputError
from ..settings import TrainSettings
from ..versioned import read_json_object

Stage = Callable[[str, int, int], None]  # (stage, done, total): setup progress of a training run

BABILONG_TASKS = tuple(f"babilong:qa{i}" for i in range(1, 6))
RULER_TASKS = ("ruler:niah_multivalue", "ruler:vt")
BUILTIN_TASKS = BABILONG_TASKS + RULER_TASKS
#: The task name of a `--data` file's samples in the mixture, the weights and the metrics.
DATA_TASK = "data"
TRAIN_DEFAULT_LENGTH = TrainSettings().length
#: RULER training contexts: 4K tokens of the training novels (about 150 sentences with the needles)
RULER_TRAIN_LENGTH = "4K"
#: Settings a resumed run may change (everything else must match the run's settings.json; "out": a run folder may move).
RESUMABLE_CHANGES = ("out", "resume", "overwrite", "steps", "threads", "val_every")
#: Without --val-data, this fraction of a --data file (its tail, at least one sample) validates.
DATA_VAL_FRACTION = 0.1


# --- the task mixture -------------------------------------------------------------------------------


def task_list(s: TrainSettings) -> list[str]:
    """The built-in tasks of `--task` (a comma list; `all` for every built-in task), in order, no repeats."""
    names: list[str] = []
    for raw in s.task.split(","):
        name = raw.strip()
        if not name:
            continue
        for t in BUILTIN_TASKS if name == "all" else (name,):
            if t not in BUILTIN_TASKS:
                raise InputError(f"unknown task {t!r}: use one or more of {', '.join(BUILTIN_TASKS)} "
                                 "(comma-separated) or 'all'")
            if t not in names:
                names.append(t)
    return names


def per_task(option: str, value: str, tasks: list[str], cast: type, what: str) -> list | None:
    """One comma-separated value per task (`--task-weights`, `--task-n-train`), or None when `value`
    is empty; InputError naming `option` when a value does not parse or the count is wrong."""
    if not value.strip():
        return None
    try:
        values = [cast(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"{option} {value!r}: give comma-separated {what}") from None
    if len(values) != len(tasks):
        raise InputError(f"{option} has {len(values)} values for {len(tasks)} tasks ({', '.join(tasks)}): "
                         "give one per task, in --task order")
    return values


def mixture(s: TrainSettings) -> dict[str, float]:
    """Task name -> its probability of drawing a new episode (`--task-weights`, normalised)."""
    tasks = task_list(s) + ([DATA_TASK] if s.data else [])
    if not tasks:
        raise InputError("nothing to train on: give --task (e.g. babilong:qa1, a comma list or 'all') or --data FILE")
    weights = per_task("--task-weights", s.task_weights, tasks, float, "numbers")
    if weights is None:
        return {t: 1.0 / len(tasks) for t in tasks}
    if any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise InputError("--task-weights must be >= 0 and not all zero")
    total = sum(weights)
    return {t: w / total for t, w in zip(tasks, weights)}


def task_sizes(s: TrainSettings) -> dict[str, int]:
    """Built-in task -> its number of training samples (`--task-n-train`, else `--n-train` for each)."""
    tasks = task_list(s)
    sizes = per_task("--task-n-train", s.task_n_train, tasks, int, "whole numbers")
    if sizes is None:
        return {t: s.n_train for t in tasks}
    if min(sizes) < 1:
        raise InputError("--task-n-train values must be at least 1")
    return dict(zip(tasks, sizes))


def task_length(s: TrainSettings, task: str) -> str:
    """The context length of one task's training samples: babilong --length; ruler 4K (its own measure)."""
    if task in RULER_TASKS and (s.length == TRAIN_DEFAULT_LENGTH or any(t in BABILONG_TASKS for t in task_list(s))):
        return RULER_TRAIN_LENGTH
    return s.length


# --- settings, data -------------------------------------------------------------------------------


def default_run_folder(task: str) -> Path:
    """Where a run goes without --out: runs/<task> (runs/mixed for a mixture)."""
    name = task if task and "," not in task and task != "all" else ("mixed" if task else DATA_TASK)
    return Path("runs") / name.replace(":", "-")


def check(s: TrainSettings) -> TrainSettings:
    """The resolved settings (preset applied, output folder defaulted); InputError on anything unusable."""
    s = s.resolve_preset()
    if s.bf16 == "auto":
        s = replace(s, bf16=fast_bf16())
    if not s.task.strip() and not s.data:
        s = replace(s, task="babilong:qa1")
    tasks = task_list(s)
    mixture(s)  # the weights and the per-task sizes are checked now, before anything is generated
    task_sizes(s)
    if s.val_data and not s.data:
        raise InputError("--val-data validates a --data run: give --data too")
    for t in tasks:
        if t in RULER_TASKS:
            from ..data.ruler import RULER_LENGTHS

            length = task_length(s, t)
            if length not in RULER_LENGTHS or RULER_LENGTHS[length] > RULER_LENGTHS[RULER_TRAIN_LENGTH]:
                raise InputError(f"ruler training length {s.length!r}: use {RULER_TRAIN_LENGTH} (contexts of about "
                                 "100 sentences, like babilong's training contexts)")
    if tasks and all(t in RULER_TASKS for t in tasks) and s.length == TRAIN_DEFAULT_LENGTH:
        s = replace(s, length=RULER_TRAIN_LENGTH)
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
    if s.mined_negatives and (not any(t in BABILONG_TASKS for t in tasks) or not s.freeze_action):
        raise InputError("--mined-negatives needs a babilong task and the frozen action encoder (--freeze-action, "
                         "as in the cpu preset): the mined sentences are ranked by the base model's vectors")
    if s.init and not s.resume and not (Path(s.init) / "manifest.json").is_file():  # a resume has its own weights
        from ..policy.artefact import split_name

        if split_name(s.init) is None:
            raise InputError(f"--init {s.init}: not a checkpoint folder (give RUN/checkpoints/last or best, a "
                             "compact policy folder or policy:default)")
    if not s.out:
        s = replace(s, out=str(default_run_folder(s.task)))
    return s


def fast_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (the cpu preset's bf16 then pays; without them PyTorch
    emulates bfloat16 matrix products, 22x slower than float32 on an AVX2-only CPU)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def base_model_path(model: str) -> Path:
    """The PyTorch folder of the base model ('default' is the bundled all-MiniLM-L6-v2)."""
    from ..embed.models import default_model_path, resolve_model

    if model in ("", "default", "default:torch", "all-MiniLM-L6-v2"):
        return default_model_path()
    spec = resolve_model(model)
    if spec.engine != "torch":
        raise InputError(f"{model} is an exported ONNX model: training needs a PyTorch (Hugging Face) folder")
    return spec.path


def make_samples(s: TrainSettings, stage: Stage | None = None) -> tuple[list[dict], list[dict]]:
    """(training, validation) samples of every task of the mixture, each tagged with its `train_task`
    (`stage("generate samples", done, total)` is told the samples generated after each task).

    Built-in tasks: `--n-train` (or its `--task-n-train` entry) + `--n-val` samples each, from the 'train' split (validation is the tail).
    `--data`: the file's samples (validation: `--val-data`, else the file's last DATA_VAL_FRACTION)."""
    from ..data.generate import generate
    from ..settings import DataSettings

    train: list[dict] = []
    val: list[dict] = []
    sizes = task_sizes(s)
    total = sum(sizes.values()) + len(sizes) * s.n_val
    if stage and sizes:
        stage("generate samples", 0, total)
    for t, n_train in sizes.items():
        bench, task = t.split(":")
        babilong = bench == "babilong"
        _, samples = generate(DataSettings(benchmark=bench, task=task, length=task_length(s, t),
                                           n=n_train + s.n_val, split="train", seed=s.seed,
                                           hard_negatives=s.hard_negatives if babilong else 0.0,
                                           background_pool=s.background_pool if babilong else 0))
        if any("context" not in x for x in samples):
            raise InputError(f"length {s.length!r} is too long for training contexts: use a number of sentences "
                             "below 1200")
        for x in samples:
            x["train_task"] = t
        train += samples[:n_train]
        val += samples[n_train:]
        if stage:
            stage("generate samples", len(train) + len(val), total)
    if s.data:
        from .user_data import read_training_file

        data = read_training_file(s.data)
        if s.val_data:
            held = read_training_file(s.val_data)
        else:
            cut = len(data) - max(1, int(len(data) * DATA_VAL_FRACTION))
            if cut < 1:
                raise InputError(f"{s.data}: {len(data)} sample(s) cannot be split into training and validation: "
                                 "add samples or give --val-data")
            data, held = data[:cut], data[cut:]
        train += data
        val += held
    return train, val


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


#: Settings that do not change what a run learns (left out of the recorded command).
NOT_IN_COMMAND = ("out", "resume", "overwrite", "threads")


def command_line(saved: dict) -> str:
    """The `qrag train` command of a run's resolved settings (settings.json): every option that differs
    from its preset's default, so running it again trains the same policy."""
    preset = TrainSettings(preset=saved.get("preset", "reference")).resolve_preset()
    ref = asdict(preset)
    parts = ["qrag", "train", "--preset", preset.preset]
    for k, v in saved.items():
        if k in NOT_IN_COMMAND or k == "preset" or k not in ref or v == ref[k]:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + flag[2:])
        else:
            text = str(v)
            parts += [flag, text if text and all(c.isalnum() or c in ",.:-_/+" for c in text) else json.dumps(text)]
    return " ".join(parts)
