"""Help and option plumbing of the `qrag` command: each command's examples (its --help epilog), the
shared --quiet option, and the generator that turns a settings dataclass into Typer options (used for
`qrag train`, whose options are grouped into help panels by topic)."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Optional

import typer
from rich.markup import escape

from .cli_progress import INTERVAL_ENV
from .settings import field_help


def examples(*lines: str) -> str:
    """A command's --help epilog: copy-pasteable examples, one per line."""
    return "Examples:\n\n" + "\n".join(f"  {escape(line)}" for line in lines)


EXAMPLES = {
    "index": examples(
        "qrag index examples/demo.txt --overwrite",
        "qrag index more-books/ --append indexes/books",
        "qrag index library/ --out indexes/library --ray auto",
        "qrag index --add-bm25 indexes/books",
    ),
    "query": examples(
        'qrag query --index indexes/demo --steps 2 "Where is the football?"',
        "qrag query --index indexes/demo --topics topics.tsv --format trec --run-tag mine > run.trec",
        "qrag query --index indexes/library --topics topics.tsv --ray auto > answers.jsonl",
        'qrag query --index indexes/demo --steps 3 --retriever hybrid --fusion rrf "Where is the football?"',
    ),
    "export": examples(
        "qrag export --out models/minilm-onnx",
        "qrag export --out models/minilm-int8 --int8",
        "qrag export runs/qa1/checkpoints/best --compact --out policies/qa1",
    ),
    "data": examples(
        "qrag data babilong --task qa1 --length 4k --n 100 --out qa1-4k.jsonl",
        "qrag data ruler --task niah_single --length 16k --n 50 --out niah.jsonl",
    ),
    "bench": examples(
        "qrag bench babilong --tasks qa1,qa2 --lengths 4k --n 50",
        "qrag bench ruler --tasks niah_single --lengths 16k --methods dense-topk,bm25-topk",
        "qrag bench --data qa1-4k.jsonl --out bench-out/qa1",
        "qrag bench --show-misses --out bench-out/qa1 | jq -c '{id, method, missing}'",
    ),
    "train": examples(
        "qrag train --task babilong:qa1 --preset cpu --out runs/qa1",
        "qrag train --task babilong:qa1,babilong:qa2 --steps 2000 --out runs/mix",
        "qrag train --task babilong:qa1 --out runs/qa1 --resume",
    ),
}


QUIET_HELP = (f"No progress or info messages on stderr (warnings and errors still print). Without a terminal, "
              f"progress is a plain line every ${INTERVAL_ENV} seconds (default 10).")


def quiet_option(panel: str | None = None) -> Any:
    return typer.Option(False, "--quiet", "-q", help=QUIET_HELP, rich_help_panel=panel)


TRAIN_PANELS = {
    "Task and data": "task task_weights data val_data length n_train task_n_train n_val hard_negatives background_pool "
                     "mined_negatives",
    "Run": "out steps seed resume overwrite init preset model threads val_every",
    "Optimisation": "max_steps batch_size n_envs lr adam_eps weight_decay clip warmup_updates warmup_transitions",
    "Reinforcement learning": "tau gamma lam alpha alpha_schedule rollout_dropout soft_top",
    "Model": "scale positions piece_tokens max_tokens train_state_layers freeze_action train_action_layers",
}


def panel_of(panels: dict[str, str]) -> dict[str, str]:
    return {name: panel for panel, names in panels.items() for name in names.split()}


def options_from(cls: type, flags: dict[str, tuple[str, ...]] | None = None,
                 panels: dict[str, str] | None = None) -> inspect.Signature:
    """A Typer signature with one --option per dataclass field: its type, default and help, in the
    help panel `panels` names for it (panel title -> space-separated field names).
    Fields whose default is None ('take the preset's value') become optional options."""
    where = panel_of(panels or {})
    hints = typing.get_type_hints(cls)
    defaults, helps, params = cls(), field_help(cls), []
    for f in dataclasses.fields(cls):
        names = (flags or {}).get(f.name, ("--" + f.name.replace("_", "-"),))
        typ = hints[f.name]
        if typing.get_origin(typ) in (typing.Union, types.UnionType):
            inner = next(a for a in typing.get_args(typ) if a is not type(None))
            typ = Optional[inner]
            if inner is bool:
                names = (f"{names[0]}/--no-{names[0][2:]}",)
        option = typer.Option(getattr(defaults, f.name), *names, help=helps[f.name],
                              rich_help_panel=where.get(f.name))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=typ))
    return inspect.Signature(params)
