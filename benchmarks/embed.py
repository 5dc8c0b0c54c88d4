"""Benchmark of embedder engines and int8 recipes (all-MiniLM-L6-v2) on novel sentences, in one run.

For torch eager fp32, onnxruntime fp32 and every int8 recipe tried, measures
  * speed: tokens/s (non-padding tokens, [CLS]/[SEP] included) on `--threads` threads, batches of
    `--batch` length-sorted 20-30-word-piece sentences; all engines run in interleaved rounds and the
    best round counts (the machine is shared and noisy);
  * quality against onnxruntime fp32 on `--n` sentences (5-128 word pieces): mean / min cosine and
    top-10 neighbour overlap (for each sentence its 10 nearest other sentences under the int8 vectors
    vs under the fp32 vectors; |intersection| / 10, averaged).
Evaluation sentences come from the even-numbered novels (name order), calibration sentences of the
static recipes from the odd-numbered ones, all read in place from the shared folder.

    /work/venv/bin/python benchmarks/embed.py --n 10000 --json bench-out/embed.json

Prints a Markdown table to stdout (progress to stderr) and writes the JSON. The fp32 export is the
default model's (`$QRAG_CACHE`, made on first use); `--only a,b` runs a subset of the recipes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import lzma
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qrag_cli.corpus.sentences import split_sentences
from qrag_cli.embed.quantize import quantize_int8, split_first_row

CHOSEN = "int8 dyn pc + fp32 [CLS] row (shipped)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------------


def shared_dir() -> Path:
    env = os.environ.get("QRAG_SHARED")
    return Path(env) if env else ROOT.parent / "shared"


def novel_sentences(files: list[Path], tok, lo: int, hi: int, limit: int) -> list[str]:
    """Up to `limit` sentences of `lo`..`hi` word pieces, round-robin over `files`, seeded shuffle per novel."""
    rng = np.random.default_rng(0)
    per_file = []
    for path in files:
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            sents = [t for _, _, t in split_sentences([fh.read()])]
        counts = [len(e.ids) for e in tok.encode_batch(sents, add_special_tokens=False)]
        keep = [s for s, c in zip(sents, counts) if lo <= c <= hi]
        per_file.append([keep[i] for i in rng.permutation(len(keep))])
    out: list[str] = []
    for i in range(max(map(len, per_file), default=0)):
        out.extend(s[i] for s in per_file if i < len(s))
    return out[:limit]


def batches(ids: list[list[int]], size: int) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """Length-sorted padded batches: (row indices, input_ids, attention_mask)."""
    from qrag_cli.embed.encoder import padded_batches

    return list(padded_batches(ids, size))


# --- engines ---------------------------------------------------------------------------------------


class Ort:
    def __init__(self, path: Path, threads: int, level: str = "all") -> None:
        import onnxruntime as ort

        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = threads, 1, 3
        o.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                      "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
        self.session = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

    def __call__(self, a: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self.session.run(["embedding"], {"input_ids": a, "attention_mask": m})[0]


class TorchEager:
    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from transformers import AutoModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    def __call__(self, a: np.ndarray, m: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            ids, mask = torch.from_numpy(a), torch.from_numpy(m)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            w = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()


# --- int8 recipes ----------------------------------------------------------------------------------


def kind(name: str) -> str:
    """Which projection a MatMul of the MiniLM export is, from its name."""
    for key, k in (("attention/self/", "qkv"), ("attention/output", "o"), ("intermediate", "ffn1"), ("output/dense", "ffn2")):
        if key in name:
            return k
    return "other"


def weight_matmuls(model) -> list:
    w = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in w]


def dynamic(src: Path, dst: Path, *, per_channel=True, matmul_only=True, reduce_range=False, u8_weights=False,
            exclude: Callable[[str], bool] | None = None, extra_exclude=()) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = [n.name for n in weight_matmuls(onnx.load(str(src))) if exclude and exclude(n.name)]
    quantize_dynamic(str(src), str(dst), per_channel=per_channel, reduce_range=reduce_range,
                     weight_type=QuantType.QUInt8 if u8_weights else QuantType.QInt8,
                     op_types_to_quantize=["MatMul"] if matmul_only else None,
                     nodes_to_exclude=names + list(extra_exclude),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def static(src: Path, dst: Path, cal: list[dict], *, method="minmax", fmt="qdq", sym_act=False, reduce_range=False,
           extra_exclude=()) -> None:
    """Static quantisation of the weight MatMuls (attention products and MatMul outputs left fp32)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(cal)

        def get_next(self):
            return next(self.it, None)

    model = onnx.load(str(src))
    w = {t.name for t in model.graph.initializer}
    act_act = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in w]
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT, "OpTypesToExcludeOutputQuantization": ["MatMul"],
             "ActivationSymmetric": sym_act}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    ort_quantize = sys.modules["onnxruntime.quantization.quantize"]

    make = ort_quantize.create_calibrator
    if method == "entropy":  # quantize_static passes no bin counts; ORT's default 128/128 makes Entropy = MinMax
        ort_quantize.create_calibrator = lambda *a, extra_options=None, **k: make(
            *a, extra_options={**(extra_options or {}), "num_bins": 2048, "num_quantized_bins": 255}, **k)
    try:
        quantize_static(str(src), str(dst), Reader(), per_channel=True, reduce_range=reduce_range,
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=QuantType.QInt8 if sym_act else QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul"], nodes_to_exclude=act_act + list(extra_exclude),
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method], extra_options=extra)
    finally:
        ort_quantize.create_calibrator = make


def with_split(src: Path, tmp: Path, name: str, keep: tuple[str, ...] = ("qkv", "ffn1", "ffn2")) -> tuple[Path, list[str]]:
    """`split_first_row` (fp32 [CLS] row), restricted to the MatMul kinds in `keep`."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))  # the splitter needs the input ranks
    skip = {n.name for n in weight_matmuls(model) if kind(n.name) not in keep}
    for n in weight_matmuls(model):  # hide the others from the splitter by renaming their input temporarily
        if n.name in skip:
            n.input[0] = n.input[0] + "#keep"
    if "o" in keep:  # the splitter skips inputs made by Reshape (the attention context): pass them through Identity
        for n in weight_matmuls(model):
            if kind(n.name) == "o":
                model.graph.node.append(onnx.helper.make_node("Identity", [n.input[0]], [n.input[0] + "/id"], name=n.name + "/id"))
                n.input[0] += "/id"
        model = onnx.shape_inference.infer_shapes(_toposorted(model))
    fp32 = split_first_row(model)
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.input[0].endswith("#keep"):
            n.input[0] = n.input[0][: -len("#keep")]
    out = tmp / f"{name}.split.onnx"
    onnx.save(model, str(out))
    return out, fp32


def _toposorted(model):
    """The model with its nodes in a valid order (after nodes were appended at the end)."""
    g = model.graph
    avail = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    order, pending = [], list(g.node)
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                order.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError("graph has a cycle or a dangling input")
        pending = rest
    del g.node[:]
    g.node.extend(order)
    return model


def channel_stats(src: Path, cal: list[dict], inputs: list[str], skip_row0: bool) -> dict[str, np.ndarray]:
    """Per-channel abs max of the given tensors over the calibration batches (padding and optionally row 0 excluded)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    for x in inputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None))
    o = ort.SessionOptions()
    o.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])
    amax: dict[str, np.ndarray] = {}
    for feeds in cal:
        mask = feeds["attention_mask"].astype(bool).copy()
        if skip_row0:
            mask[:, 0] = False
        for x, v in zip(inputs, s.run(inputs, feeds)):
            a = np.abs(v[mask]).max(0)
            amax[x] = np.maximum(amax[x], a) if x in amax else a
    return amax


def smoothed(src: Path, dst: Path, cal: list[dict], *, alpha: float | None = None, outlier_k: float | None = None,
             kinds=("qkv", "ffn1", "ffn2"), skip_row0=False) -> None:
    """SmoothQuant-style channel scaling: X/s into the MatMul (an explicit Mul), W*s into the weights.
    `alpha`: s = amax^a / wmax^(1-a) (SmoothQuant); `outlier_k`: s = max(1, amax / (k * median amax))."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    groups: dict[str, list] = {}
    for n in weight_matmuls(model):
        if kind(n.name) in kinds:
            groups.setdefault(n.input[0], []).append(n)
    amax = channel_stats(src, cal, list(groups), skip_row0)
    muls = {}
    for x, nodes in groups.items():
        ws = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        if alpha is not None:
            wmax = np.max([np.abs(w).max(1) for w in ws], axis=0)
            s = np.maximum(amax[x], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)
        else:
            s = np.maximum(amax[x] / (outlier_k * np.median(amax[x])), 1.0)
        s = s.astype(np.float32)
        for n, w in zip(nodes, ws):
            inits[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), n.input[1]))
            n.input[0] = x + "/smooth"
        model.graph.initializer.append(numpy_helper.from_array(1 / s, x + "/smooth_inv"))
        muls[x] = helper.make_node("Mul", [x, x + "/smooth_inv"], [x + "/smooth"], name=x + "/smooth")
    nodes = [m for x, m in muls.items() if x not in {o for n in model.graph.node for o in n.output}]
    for n in model.graph.node:
        nodes.append(n)
        nodes.extend(muls[o] for o in n.output if o in muls)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))


def bert_optimized(src: Path, dst: Path) -> dict:
    """onnxruntime.transformers optimizer (model_type bert); returns its fusion statistics."""
    from onnxruntime.transformers.optimizer import optimize_model

    m = optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    m.save_model_to_file(str(dst))
    return {k: v for k, v in m.get_fused_operator_statistics().items() if v}


def mha_fused(src: Path, dst: Path) -> int:
    """Replace each decomposed self-attention core (scores, mask, softmax, probs x V and the head
    reshapes) with com.microsoft MultiHeadAttention fed by the Q/K/V projections; returns the count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name]).reshape(-1)
        p = prod.get(name)
        return numpy_helper.to_array(p.attribute[0].t).reshape(-1) if p is not None and p.op_type == "Constant" else None

    def projection(name):  # up through Reshape/Transpose/Mul-by-scalar to Add(bias, MatMul(X, W))
        scale = 1.0
        while (p := prod.get(name)) is not None:
            if p.op_type in ("Reshape", "Transpose"):
                name = p.input[0]
            elif p.op_type == "Mul" and (c := const(p.input[1])) is not None and c.size == 1:
                scale, name = scale * float(c[0]), p.input[0]
            elif p.op_type == "Add":
                return p, scale
            else:
                break
        return None, scale

    new, drop = [], set()
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        add = prod.get(sm.input[0])
        scores = add is not None and next((prod[i] for i in add.input if i in prod and prod[i].op_type == "MatMul"), None)
        if not scores:
            continue
        (q, sq), (k, sk) = projection(scores.input[0]), projection(scores.input[1])
        x, pv = sm.output[0], None
        for _ in range(3):
            nxt = [n for n in cons.get(x, []) if n.op_type in ("MatMul", "Where")]
            if not nxt:
                break
            if nxt[0].op_type == "MatMul" or any(n.op_type == "MatMul" for n in nxt):
                pv = next(n for n in nxt if n.op_type == "MatMul")
                break
            x = nxt[0].output[0]
        if pv is None or q is None or k is None:
            continue
        v, _ = projection(pv.input[1])
        last, x, seen = None, pv.output[0], []
        while len(c := [n for n in cons.get(x, []) if n.op_type != "Shape"]) == 1 and c[0].op_type in ("Reshape", "Transpose"):
            last, x = c[0], c[0].output[0]
            seen.append(last.op_type)
        if v is None or last is None or last.op_type != "Reshape" or "Transpose" not in seen:
            continue
        shape = prod.get(cons[q.output[0]][0].input[1])  # the head reshape's target: (..., head size)
        hs = const(shape.input[-1]) if shape is not None and shape.op_type == "Concat" else None
        mm = next((prod[i] for i in q.input if i in prod and prod[i].op_type == "MatMul"), None)
        if hs is None or mm is None or mm.input[1] not in inits:
            continue
        hidden = int(inits[mm.input[1]].dims[1])
        if hidden % int(hs[0]):
            continue
        if not new:
            new.append(helper.make_node("Cast", ["attention_mask"], ["mha/mask"], name="mha/mask_cast", to=TensorProto.INT32))
        new.append(helper.make_node("MultiHeadAttention", [q.output[0], k.output[0], v.output[0], "", "mha/mask"],
                                    [last.output[0]], name=sm.name + "/mha", domain="com.microsoft",
                                    num_heads=hidden // int(hs[0]), scale=sq * sk))
        drop.add(id(last))
    nodes = [n for n in g.node if id(n) not in drop] + new
    producer = {o: n for n in nodes for o in n.output}
    live, stack = set(), [o.name for o in g.output]
    while stack:
        p = producer.get(stack.pop())
        if p is not None and id(p) not in live:
            live.add(id(p))
            stack.extend(p.input)
    keep = [n for n in nodes if id(n) in live]
    del g.node[:]
    g.node.extend(keep)
    _toposorted(model)
    del g.value_info[:]
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(dst))
    return len(drop)


def nbits8(src: Path, dst: Path, block: int = 32) -> None:
    """MatMulNBits, 8-bit symmetric blockwise weights, accuracy_level 4 (int8 compute, per-block activations)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            k, cols = w.shape
            wt = w.T.reshape(cols, k // block, block)
            scale = np.maximum(np.abs(wt).max(-1), 1e-12) / 127
            q = (np.clip(np.rint(wt / scale[..., None]), -127, 127) + 128).astype(np.uint8)
            model.graph.initializer.extend([numpy_helper.from_array(q, n.input[1] + "/q8"),
                                            numpy_helper.from_array(scale.reshape(-1).astype(np.float32), n.input[1] + "/s8")])
            nodes.append(helper.make_node("MatMulNBits", [n.input[0], n.input[1] + "/q8", n.input[1] + "/s8"], list(n.output),
                                          name=n.name, domain="com.microsoft", K=k, N=cols, bits=8, block_size=block,
                                          accuracy_level=4))
        else:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(dst))


def recipes(fp32: Path, tok_json: Path, tmp: Path, cal: list[dict], cal_texts: list[str]):
    """(name, build) pairs; build() returns (path, session optimisation level, notes)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    out = lambda name: tmp / f"{name.replace(' ', '_').replace('/', '-')}.onnx"

    def dyn(name, src=pre, **kw):
        dynamic(src, out(name), **kw)
        return out(name), "all", ""

    def split_dyn(name, keep):
        s, ex = with_split(pre, tmp, "split", keep)
        return dyn(name, s, extra_exclude=ex)

    def shipped(name, level="all"):
        p = out(name)
        return p, level, quantize_int8(fp32, p, cal_texts[:64], tokenizer=tok_json)

    def smooth_dyn(name, split, **kw):
        s = tmp / "smooth.onnx"
        smoothed(pre, s, cal, skip_row0=split, **kw)
        ex: list[str] = []
        if split:
            s, ex = with_split(s, tmp, "smooth", ("qkv", "ffn1", "ffn2"))
        return dyn(name, s, extra_exclude=ex)

    def opt_dyn(name):
        o = tmp / "bert_opt.onnx"
        stats = bert_optimized(pre, o)
        dyn(name, o)
        return out(name), "all", f"fusions {stats}"

    def mha_dyn(name):
        o = tmp / "mha.onnx"
        count = mha_fused(pre, o)
        dyn(name, o)
        return out(name), "all", f"{count} attention blocks fused"

    def stat(name, split=False, **kw):
        src, ex = with_split(pre, tmp, "split", ("qkv", "ffn1", "ffn2")) if split else (pre, [])
        static(src, out(name), cal, extra_exclude=ex, **kw)
        return out(name), "all", ""

    def nb(name):
        nbits8(pre, out(name))
        return out(name), "all", ""

    layer = lambda n: n.split("layer.")[1].split("/")[0] if "layer." in n else ""
    return [
        ("int8 dyn per-tensor (ORT defaults, +Gather)", lambda n: dyn(n, per_channel=False, matmul_only=False)),
        ("int8 dyn per-channel (ORT defaults, +Gather)", lambda n: dyn(n, matmul_only=False)),
        ("int8 dyn pc MatMul-only", lambda n: dyn(n)),
        ("int8 dyn pc reduce_range", lambda n: dyn(n, reduce_range=True)),
        ("int8 dyn pc QUInt8 weights", lambda n: dyn(n, u8_weights=True)),
        ("int8 dyn pc, FFN-out MatMuls fp32", lambda n: dyn(n, exclude=lambda m: kind(m) == "ffn2")),
        ("int8 dyn pc, layer 0+5 fp32", lambda n: dyn(n, exclude=lambda m: layer(m) in ("0", "5"))),
        ("int8 dyn pc, layer-0 FFN-out fp32", lambda n: dyn(n, exclude=lambda m: kind(m) == "ffn2" and layer(m) == "0")),
        ("int8 dyn pc after ORT bert optimizer", opt_dyn),
        ("int8 dyn pc after MHA fusion", mha_dyn),
        ("int8 dyn pc SmoothQuant a=0.5", lambda n: smooth_dyn(n, False, alpha=0.5)),
        ("int8 static QDQ MinMax", lambda n: stat(n)),
        ("int8 static QDQ Percentile 99.999", lambda n: stat(n, method="percentile")),
        ("int8 static QDQ Entropy", lambda n: stat(n, method="entropy")),
        ("int8 static QDQ MinMax sym s8 act", lambda n: stat(n, sym_act=True)),
        ("int8 static QDQ MinMax reduce_range", lambda n: stat(n, reduce_range=True)),
        ("int8 static QOperator MinMax", lambda n: stat(n, fmt="qoperator")),
        ("int8 static QDQ Pct + fp32 [CLS] row", lambda n: stat(n, split=True, method="percentile")),
        ("int8 MatMulNBits 8-bit b32 acc4", nb),
        ("int8 dyn pc + fp32 [CLS] row, FFN only", lambda n: split_dyn(n, ("ffn1", "ffn2"))),
        ("int8 dyn pc + fp32 [CLS] row, all 6", lambda n: split_dyn(n, ("qkv", "o", "ffn1", "ffn2"))),
        (CHOSEN, shipped),
        ("shipped, session opt BASIC (no int8 fusions)", lambda n: shipped(n, "basic")),
        ("shipped + outlier-channel smoothing k=3", lambda n: smooth_dyn(n, True, outlier_k=3.0)),
    ]


# --- measurement -----------------------------------------------------------------------------------


def quality(ref: np.ndarray, x: np.ndarray, k: int = 10) -> dict[str, float]:
    cos = np.sum(ref * x, 1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(x, axis=1), 1e-12)

    def topk(v: np.ndarray) -> np.ndarray:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        res = []
        for s in range(0, len(v), 2000):
            sim = v[s : s + 2000] @ v.T
            sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf
            res.append(np.argpartition(-sim, k, axis=1)[:, :k])
        return np.concatenate(res)

    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(topk(ref), topk(x))])
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "top10_overlap": float(overlap)}


def embed_all(engine, bl, n: int) -> np.ndarray:
    out = None
    for rows, a, m in bl:
        e = engine(a, m)
        out = np.empty((n, e.shape[1]), np.float32) if out is None else out
        out[rows] = e
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="sentences for the quality figures")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--speed-sentences", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved speed rounds (best counts)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--calibration", type=int, default=256, help="calibration sentences (static recipes)")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching int8 recipes")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)

    from tokenizers import Tokenizer

    from qrag_cli.embed.models import default_model_path, resolve_model

    spec = resolve_model("default")
    fp32, tok_json = spec.weights, spec.path / "tokenizer.json"
    tok = Tokenizer.from_file(str(tok_json))
    tok.no_padding()
    tok.enable_truncation(max_length=128)
    files = sorted((shared_dir() / "data" / "gutenberg").glob("*.txt.xz"))
    if not files:
        sys.exit(f"no Gutenberg novels under {shared_dir() / 'data' / 'gutenberg'} (set QRAG_SHARED)")
    t0 = time.perf_counter()
    evals = novel_sentences(files[0::2], tok, 5, 128, args.n)
    speed_s = novel_sentences(files[0::2], tok, 20, 30, args.speed_sentences)
    cal_texts = novel_sentences(files[1::2], tok, 5, 128, args.calibration)
    log(f"{len(evals)} eval / {len(speed_s)} speed / {len(cal_texts)} calibration sentences ({time.perf_counter() - t0:.0f} s)")
    qb = batches([e.ids for e in tok.encode_batch(evals)], args.batch)
    sb = batches([e.ids for e in tok.encode_batch(speed_s)], args.batch)
    cal = []
    for _, a, m in batches([e.ids for e in tok.encode_batch(cal_texts)], 32):  # fixed width: histogram calibrators
        a2, m2 = np.zeros((len(a), 64), np.int64), np.zeros((len(a), 64), np.int64)
        a2[:, : min(64, a.shape[1])], m2[:, : min(64, a.shape[1])] = a[:, :64], m[:, :64]
        cal.append({"input_ids": a2, "attention_mask": m2})

    results: dict[str, dict[str, Any]] = {}
    engines: dict[str, Any] = {}
    ref = embed_all(Ort(fp32, args.threads), qb, len(evals))
    engines["torch eager fp32"] = TorchEager(default_model_path(), args.threads)
    engines["ORT fp32"] = Ort(fp32, args.threads)
    for name in list(engines):
        results[name] = {"quality": quality(ref, embed_all(engines[name], qb, len(evals))), "notes": ""}
        log(f"{name}: {results[name]['quality']}")
    only = [s for s in args.only.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="qrag-bench-int8-") as tmp:
        with contextlib.redirect_stdout(sys.stderr):
            todo = recipes(fp32, tok_json, Path(tmp), cal, cal_texts)
        for name, build in todo:
            if only and not any(s in name for s in only):
                continue
            t = time.perf_counter()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # calibrators print progress
                    path, level, notes = build(name)
                engines[name] = Ort(path, args.threads, level)
                q = quality(ref, embed_all(engines[name], qb, len(evals)))
            except Exception as exc:  # noqa: BLE001 - record a recipe that does not build or run, keep going
                results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                log(f"{name}: FAILED {results[name]['error']}")
                continue
            results[name] = {"quality": q, "notes": notes, "bytes": path.stat().st_size,
                             "build_s": round(time.perf_counter() - t, 1)}
            log(f"{name}: {q} ({results[name]['build_s']} s)")
        tokens = sum(int(m.sum()) for _, _, m in sb)
        best = {name: 0.0 for name in engines}
        for r in range(args.rounds):
            for name, engine in engines.items():
                engine(*sb[0][1:])  # warm
                t = time.perf_counter()
                for _, a, m in sb:
                    engine(a, m)
                best[name] = max(best[name], tokens / (time.perf_counter() - t))
            log(f"speed round {r + 1}/{args.rounds} done")
    for name, v in best.items():
        results[name]["tokens_per_s"] = round(v)
    base = results["ORT fp32"]["tokens_per_s"]
    lines = ["| engine / recipe | tokens/s | x ORT fp32 | mean cos | min cos | top-10 overlap |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        q = r["quality"]
        lines.append(f"| {name} | {r['tokens_per_s']:,} | {r['tokens_per_s'] / base:.2f} | {q['cos_mean']:.4f} | "
                     f"{q['cos_min']:.4f} | {q['top10_overlap']:.3f} |")
    print("\n".join(lines))
    config = {"n": len(evals), "speed_sentences": len(speed_s), "speed_tokens": tokens, "rounds": args.rounds,
              "threads": args.threads, "batch": args.batch, "calibration": len(cal_texts), "model": str(fp32),
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "command": " ".join(sys.argv)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": config, "results": results}, indent=1))
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
