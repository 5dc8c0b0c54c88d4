"""Int8 quantisation of an exported embedder graph (onnx + onnxruntime only, no torch).

Recipe (chosen by `benchmarks/embed.py`; all-MiniLM-L6-v2, 10k novel sentences, 2 threads):

* onnxruntime *dynamic* quantisation of the weight MatMuls only: int8 weights per output channel
  (symmetric), uint8 activations with a range computed per call (the u8 x s8 VNNI fast path);
  embeddings, LayerNorm, Gelu, softmax and the attention products stay fp32. onnxruntime fuses
  the result into `DynamicQuantizeMatMul` / `MatMulIntegerToFloat` when the session is created.
* the [CLS] row stays fp32. A dynamic range is one per tensor, i.e. per whole batch, and in BERT
  models the [CLS] token (always position 0) carries activations 3-5x larger than any other token
  (28 vs <= 11 at the FFN input of MiniLM): it alone sets the range and so costs every other token
  most of its resolution. So the input X (batch, tokens, k) of each Q/K/V and FFN MatMul is cut
  into X[:, :1] (fp32 MatMul, ~1/30 of the rows) and X[:, 1:] (int8), and the outputs are joined.
  The attention-output MatMul, whose input has no such outlier, is quantised whole.

Measured (10k sentences, 2 threads, 20-30-token batches of 64): onnxruntime fp32 7.5k tokens/s;
plain dynamic per-channel int8 19.5k, mean cosine 0.992, top-10 overlap 0.85; this recipe 17.4k,
0.998, 0.92. Static (calibrated) ranges, SmoothQuant, keeping layers fp32 were worse or slower.
After quantising, the int8 graph is checked against the fp32 one on the calibration
texts (or built-in sentences when none are given) and rejected if the mean cosine is below
`MIN_COSINE`, so a graph this surgery does not fit fails loudly rather than silently.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelLoadError

if TYPE_CHECKING:
    import onnx

RECIPE = "int8 dynamic per-channel MatMul (u8 act, s8 weight), fp32 [CLS] row"
MIN_COSINE = 0.98
CHECK_TEXTS = 64
CHECK_TOKENS = 128

BUILTIN_TEXTS = [
    "The kettle had been singing on the stove for some minutes before anyone thought to lift it off.",
    "She folded the letter twice, put it in her pocket, and walked down to the harbour without a word.",
    "Rain fell all through the night, and by morning the lane behind the mill was a shallow brown river.",
    "\"You are late again,\" said the schoolmaster, not looking up from the ledger on his desk.",
    "Nobody in the village could remember when the old bridge had last been painted.",
    "He counted the coins slowly, as if the number might change if he hurried.",
    "The train was crowded, so they stood in the corridor and watched the fields go by.",
    "It is a curious thing that people who dislike the sea so often choose to live beside it.",
    "Yes.",
    "After supper the children were sent upstairs, though none of them went to sleep for a long while.",
    "The doctor arrived at noon, looked at the boy, and said there was nothing to be done but wait.",
    "Her brother had gone to the city to study law, and wrote home only when he needed money.",
    "A thin grey cat sat on the wall, watching the sparrows with perfect patience.",
    "What would you have done, if you had been in my place that evening?",
    "The garden was neglected now; roses grew wild over the path and the fountain had run dry.",
    "They argued about the price for an hour and in the end agreed on exactly what he had first offered.",
    "When the lamps were lit, the long room looked almost cheerful.",
    "I have never trusted a man who is polite to everyone.",
    "The captain ordered the sails taken in, for the wind had risen sharply since dawn.",
    "Three letters came that week, and each one was worse news than the last.",
    "Chapter IV.",
    "Mrs. Hale was of the opinion that a good breakfast could cure almost any sorrow.",
    "He did not answer, but turned and looked out of the window at the snow.",
    "The road climbed through the pines, past a ruined chapel, and came out at last above the valley.",
]


def quantize_int8(src: Path, dst: Path, calibration: list[str], *, tokenizer: Path) -> str:
    """Quantise the fp32 graph `src` to int8 at `dst`; returns the recipe (the manifest's `quantization`).

    `calibration` texts are only used to check the result against fp32 (built-in sentences when empty);
    `tokenizer` is the model's tokenizer.json. Raises ModelLoadError when quantisation fails.
    """
    src, dst = Path(src), Path(dst)
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelLoadError(f"int8 quantisation needs onnx and onnxruntime: {exc}") from exc
    quiet = logging.getLogger("onnxruntime.quantization")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="qrag-int8-") as tmp:
            pre, split = Path(tmp) / "pre.onnx", Path(tmp) / "split.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            model = onnx.load(str(pre))
            fp32_rows = split_first_row(model)
            onnx.save(model, str(split))
            del model
            # reduce_range: 7-bit weights. Without it, CPUs without VNNI (AVX2 only) saturate in the u8 x s8
            # kernel (VPMADDUBSW): mean cosine to fp32 measured 0.986 instead of >= 0.99 on such a CPU
            quantize_dynamic(str(split), str(dst), per_channel=True, weight_type=QuantType.QInt8, reduce_range=True,
                             op_types_to_quantize=["MatMul"], nodes_to_exclude=fp32_rows,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        cosine = check_against_fp32(src, dst, calibration or BUILTIN_TEXTS, tokenizer)
    except ModelLoadError:
        dst.unlink(missing_ok=True)
        raise
    except Exception as exc:  # onnx/onnxruntime raise many unrelated exception types
        dst.unlink(missing_ok=True)
        raise ModelLoadError(f"int8 quantisation of {src} failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    finally:
        quiet.setLevel(level)
    if cosine < MIN_COSINE:
        dst.unlink(missing_ok=True)
        raise ModelLoadError(f"int8 quantisation of {src} is too lossy (mean cosine {cosine:.4f} to fp32 "
                             f"< {MIN_COSINE}): use the fp32 model")
    recipe = RECIPE if fp32_rows else RECIPE.replace(", fp32 [CLS] row", "")
    return f"{recipe}; check cos {cosine:.4f}"


def split_first_row(model: onnx.ModelProto) -> list[str]:
    """Cut each weight MatMul fed by a (batch, tokens, k) LayerNorm/Gelu output into an fp32 MatMul of
    token row 0 and a MatMul of rows 1.. (left for quantisation), joined by a Concat, in place.

    A bias Add right after the MatMul moves into both branches (so onnxruntime fuses it into the int8
    kernel). Exact in fp32. MatMuls fed by Reshape/Transpose (the attention context) stay whole.
    Returns the names of the row-0 MatMuls, which the quantiser must exclude.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name for t in graph.initializer if len(t.dims) == 2}
    biases = {t.name for t in graph.initializer if len(t.dims) == 1}
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.value_info
            if v.type.tensor_type.HasField("shape")}
    producer = {o: n.op_type for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    consts = {"qrag_row_0": 0, "qrag_row_1": 1, "qrag_row_end": 2**62}
    graph.initializer.extend(numpy_helper.from_array(np.array([v], np.int64), k) for k, v in consts.items())
    nodes, sliced, fp32, moved = [], set(), [], set()
    for node in graph.node:
        if id(node) in moved:
            continue
        x = node.input[0] if node.op_type == "MatMul" else ""
        if (not x or node.input[1] not in weights or rank.get(x) != 3
                or producer.get(x) in ("Reshape", "Transpose", None)):
            nodes.append(node)
            continue
        if x not in sliced:
            nodes.append(helper.make_node("Slice", [x, "qrag_row_0", "qrag_row_1", "qrag_row_1"], [x + "/row0"],
                                          name=x + "/slice_row0"))
            nodes.append(helper.make_node("Slice", [x, "qrag_row_1", "qrag_row_end", "qrag_row_1"], [x + "/rows"],
                                          name=x + "/slice_rows"))
            sliced.add(x)
        y, name = node.output[0], node.name or node.output[0]
        parts = [helper.make_node("MatMul", [x + "/row0", node.input[1]], [y + "/row0"], name=name + "/row0"),
                 helper.make_node("MatMul", [x + "/rows", node.input[1]], [y + "/rows"], name=name)]
        after = consumers.get(y, [])
        bias = [i for i in after[0].input if i != y] if len(after) == 1 and after[0].op_type == "Add" else []
        if len(bias) == 1 and bias[0] in biases:
            moved.add(id(after[0]))
            parts += [helper.make_node("Add", [y + part, bias[0]], [y + part + "/bias"], name=name + part + "/bias")
                      for part in ("/row0", "/rows")]
            joined, y = [y + "/row0/bias", y + "/rows/bias"], after[0].output[0]
        else:
            joined = [y + "/row0", y + "/rows"]
        nodes += parts + [helper.make_node("Concat", joined, [y], name=name + "/join", axis=1)]
        fp32.append(name + "/row0")
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale for the split tensors; the quantiser infers what it needs
    return fp32


def check_against_fp32(fp32: Path, int8: Path, texts: list[str], tokenizer: Path) -> float:
    """Mean cosine between the `embedding` outputs of two graphs on up to CHECK_TEXTS texts."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_padding()
    tok.enable_truncation(max_length=CHECK_TOKENS)
    ids = [e.ids for e in tok.encode_batch([t for t in texts if t.strip()][:CHECK_TEXTS])]
    if not ids:
        raise ModelLoadError("no non-empty text to check the int8 model with")
    width = max(len(i) for i in ids)
    input_ids = np.zeros((len(ids), width), np.int64)
    mask = np.zeros_like(input_ids)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    options = ort.SessionOptions()
    options.log_severity_level = 3
    outs = []
    for path in (fp32, int8):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        outs.append(session.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})[0])
    a, b = outs
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(cos.mean())
