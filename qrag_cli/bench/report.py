"""Writing a benchmark's results: results.json, settings.json, results.md and coverage.png.

`write_results(out_dir, results)` writes every file atomically (temporary file, then rename) and
returns the Markdown tables for stdout: one row per task and length, one column per method with
``coverage [fact F1, chunks kept]``, an average row per length, the 95% Wilson interval of each
coverage, then latency and build times per method and length. matplotlib (Agg backend, no display) is imported only by `plot_coverage`.
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


def _interval(r: dict[str, Any] | None) -> str:
    ci = None if r is None else r.get("coverage_ci95")
    return "-" if not ci else f"{ci[0]:.2f}–{ci[1]:.2f}"


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
    if any(r.get("coverage_ci95") for r in rows):
        lines += ["", "Coverage, 95% Wilson interval (per cell; averages: the pooled samples)", "",
                  "| task | length | " + " | ".join(methods) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in methods) + " |"]
        avg = {(a["method"], a["length"]): a for a in results.get("averages", [])}
        for length in results["lengths"]:
            for task in results["tasks"]:
                if any((m, task, length) in by for m in methods):
                    cells = [_interval(by.get((m, task, length))) for m in methods]
                    lines.append(f"| {task} | {length} | " + " | ".join(cells) + " |")
            if len(results["tasks"]) > 1:
                cells = [_interval(avg.get((m, length))) for m in methods]
                lines.append(f"| **all** | {length} | " + " | ".join(cells) + " |")
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
    """coverage.png. Several lengths: coverage against context length, one line per method (its 95%
    interval shaded), one panel per task plus an average panel. One length: grouped bars, one group
    per task (and the average), one bar per method with its value and 95% interval, so methods with
    equal figures stay visible side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods, lengths, tasks = results["methods"], results["lengths"], list(results["tasks"])
    by = {(r["method"], r["task"], r["length"]): r for r in results["results"]}
    panels = tasks + (["average"] if len(tasks) > 1 else [])
    if len(tasks) > 1:
        for a in results.get("averages", []):
            by[(a["method"], "average", a["length"])] = a
    if len(lengths) == 1:
        fig = Figure(figsize=(max(5.0, 1.1 + 0.45 * len(methods) * len(panels)), 3.8))
        FigureCanvasAgg(fig)
        _bars(fig.add_subplot(1, 1, 1), by, methods, panels, lengths[0], results["benchmark"])
    else:
        cols = min(3, len(panels))
        nrows = (len(panels) + cols - 1) // cols
        fig = Figure(figsize=(4.2 * cols, 3.4 * nrows))
        FigureCanvasAgg(fig)
        for j, panel in enumerate(panels):
            _lines(fig.add_subplot(nrows, cols, j + 1), by, methods, panel, lengths, results["benchmark"], j == 0)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _value(r: dict[str, Any] | None) -> tuple[float, float, float]:
    """(coverage, lower, upper) of a cell; NaN when the cell is missing."""
    if r is None or r.get("coverage") is None:
        return float("nan"), float("nan"), float("nan")
    ci = r.get("coverage_ci95") or [r["coverage"], r["coverage"]]
    return float(r["coverage"]), float(ci[0]), float(ci[1])


def _bars(ax: Any, by: dict, methods: list[str], panels: list[str], length: str, benchmark: str) -> None:
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        vals = [_value(by.get((m, p, length))) for p in panels]
        xs = [g + (i - (len(methods) - 1) / 2) * width for g in range(len(panels))]
        ys = [v[0] for v in vals]
        err = [[max(0.0, v[0] - v[1]) for v in vals], [max(0.0, v[2] - v[0]) for v in vals]]
        bars = ax.bar(xs, ys, width * 0.95, yerr=err, capsize=2, label=m, error_kw={"elinewidth": 0.8})
        ax.bar_label(bars, labels=["" if y != y else f"{y:.2f}" for y in ys], fontsize=6, padding=1)
    ax.set_xticks(list(range(len(panels))))
    ax.set_xticklabels(panels)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("coverage")
    ax.set_title(f"{benchmark}, {length} (whiskers: 95% Wilson interval)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _lines(ax: Any, by: dict, methods: list[str], panel: str, lengths: list[str], benchmark: str,
           legend: bool) -> None:
    x = list(range(len(lengths)))
    styles = [("o", "-", 10), ("s", "--", 8), ("^", "-.", 6), ("D", ":", 4)]
    for i, m in enumerate(methods):
        vals = [_value(by.get((m, panel, n))) for n in lengths]
        marker, line, size = styles[i % len(styles)]  # overlapping curves stay visible
        (drawn,) = ax.plot(x, [v[0] for v in vals], marker=marker, linestyle=line, markersize=size, label=m)
        ax.fill_between(x, [v[1] for v in vals], [v[2] for v in vals], color=drawn.get_color(), alpha=0.12)
    ax.set_xticks(x)
    ax.set_xticklabels(lengths)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{benchmark} {panel}")
    ax.set_xlabel("context length")
    ax.set_ylabel("coverage")
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize="small", loc="lower left")


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
