"""Writing a benchmark's results: results.json, settings.json, results.md and coverage.png.

`write_results(out_dir, results)` writes every file atomically (temporary file, then rename) and
returns the Markdown tables for stdout: one row per task and length, one column per method with
``coverage [fact F1, chunks kept]``, an average row per length, then latency and build times per
method and length. matplotlib (Agg backend, no display) is imported only by `plot_coverage`.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{_fmt(r['coverage'])} [{_fmt(r['fact_f1'])}, {_fmt(r['kept_mean'], 1)}]"


def markdown_table(results: dict[str, Any]) -> str:
    """The Markdown summary of a results dict (see module doc)."""
    methods: list[str] = results["methods"]
    rows: list[dict[str, Any]] = results["results"]
    by = {(r["method"], r["task"], r["length"]): r for r in rows}
    n = max((r["n"] for r in rows), default=results["settings"]["n"])  # a --data file's own count
    lines = [
        f"Coverage [fact F1, chunks kept] — {results['benchmark']}, n={n}, "
        f"steps={results['steps']}, k={results['k']}, stop threshold={results['stop_threshold']}",
        "",
        "| task | length | " + " | ".join(methods) + " |",
        "| --- | --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for length in results["lengths"]:
        for task in results["tasks"]:
            if not any((m, task, length) in by for m in methods):
                continue
            cells = [_cell(by.get((m, task, length))) for m in methods]
            lines.append(f"| {task} | {length} | " + " | ".join(cells) + " |")
        if len(results["tasks"]) > 1:
            avg = {(a["method"], a["length"]): a for a in results.get("averages", [])}
            cells = [_cell(avg.get((m, length))) for m in methods]
            lines.append(f"| **avg** | {length} | " + " | ".join(cells) + " |")
    if any("answer_accuracy" in r for r in rows):
        lines += ["", "Answer accuracy (reader answers scored; failures not counted)", "",
                  "| task | length | " + " | ".join(methods) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in methods) + " |"]
        for length in results["lengths"]:
            for task in results["tasks"]:
                cells = []
                for m in methods:
                    r = by.get((m, task, length))
                    cells.append("-" if r is None else f"{_fmt(r.get('answer_accuracy'))} ({r.get('reader_failures', 0)} failed)")
                lines.append(f"| {task} | {length} | " + " | ".join(cells) + " |")
    lines += ["", "Latency per question, median ms / context build, mean ms (averaged over tasks)", "",
              "| length | " + " | ".join(methods) + " |", "| --- | " + " | ".join("---" for _ in methods) + " |"]
    for length in results["lengths"]:
        cells = []
        for m in methods:
            sel = [r for r in rows if r["method"] == m and r["length"] == length]
            if not sel:
                cells.append("-")
                continue
            lat = sum(r["latency_ms_median"] for r in sel) / len(sel)
            build = sum(r["build_ms_mean"] for r in sel) / len(sel)
            cells.append(f"{lat:.1f} / {build:.1f}")
        lines.append(f"| {length} | " + " | ".join(cells) + " |")
    bgs = results.get("backgrounds") or []
    if bgs:
        lines += ["", "Background embedding: " + "; ".join(
            f"{b['model']} {b['n_sentences']} sentences "
            + ("from cache" if b["from_cache"] else f"{b['embed_s']:.1f} s ({b['embedded']} embedded)")
            for b in bgs)]
    if results.get("reader"):
        rd = results["reader"]
        lines += ["", f"Reader {rd['url']}: {rd['calls']} calls, {rd['failures']} failures"]
    lines += ["", f"Wall time {results['wall_s']:.1f} s"]
    return "\n".join(lines) + "\n"


def plot_coverage(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """coverage.png: coverage against context length, one line per method, one panel per task
    (plus an average panel when there are several tasks)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods, lengths, tasks = results["methods"], results["lengths"], list(results["tasks"])
    by = {(r["method"], r["task"], r["length"]): r["coverage"] for r in results["results"]}
    panels = tasks + (["average"] if len(tasks) > 1 else [])
    if len(tasks) > 1:
        for a in results.get("averages", []):
            by[(a["method"], "average", a["length"])] = a["coverage"]
    cols = min(3, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.4 * nrows))
    FigureCanvasAgg(fig)
    x = list(range(len(lengths)))
    styles = [("o", "-", 10), ("s", "--", 8), ("^", "-.", 6), ("D", ":", 4)]
    for j, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, j + 1)
        for i, m in enumerate(methods):
            ys = [by.get((m, panel, n)) for n in lengths]
            marker, line, size = styles[i % len(styles)]  # overlapping curves stay visible
            ax.plot(x, [float("nan") if y is None else y for y in ys], marker=marker, linestyle=line,
                    markersize=size, label=m)
        ax.set_xticks(x)
        ax.set_xticklabels(lengths)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{results['benchmark']} {panel}")
        ax.set_xlabel("context length")
        ax.set_ylabel("coverage")
        ax.grid(True, alpha=0.3)
        if j == 0:
            ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_results(out_dir: str | os.PathLike, results: dict[str, Any], *, plot: bool = True) -> str:
    """Write results.json, settings.json, results.md and (unless `plot` is false) coverage.png into
    `out_dir` (created if needed); returns the Markdown tables."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    write_bytes_atomic(out / "results.json", _json_bytes(results))
    write_bytes_atomic(out / "settings.json", _json_bytes(results["settings"]))
    write_bytes_atomic(out / "results.md", table.encode("utf-8"))
    if plot:
        plot_coverage(results, out / "coverage.png")
    return table
