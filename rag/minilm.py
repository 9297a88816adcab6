"""MiniLM's forward pass, two ways that need no torch: float32 NumPy, and a BERT graph built in memory with the
``onnx`` helper API and run by ONNX Runtime. Both return the last layer's token states; pooling (mean over tokens,
or over a sentence's span inside its chunk) and L2 normalisation are shared. rag.embedding chooses and loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The model's weights by name, from ``model.safetensors`` in ``path``."""
    from safetensors.numpy import load_file

    return dict(load_file(str(path / "model.safetensors")))


class NumpyMiniLM:
    """MiniLM's BERT encoder in float32 NumPy: token states for ``mean_pool`` and ``pool_spans``."""

    heads = 12
    eps = 1e-12

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items() if v.dtype != np.int64}
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate(
                [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")], axis=0
            ).T.copy()
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append(
                (
                    qkv_w,
                    qkv_b,
                    w[p + "attention.output.dense.weight"].T.copy(),
                    w[p + "attention.output.dense.bias"],
                    (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                    w[p + "intermediate.dense.weight"].T.copy(),
                    w[p + "intermediate.dense.bias"],
                    w[p + "output.dense.weight"].T.copy(),
                    w[p + "output.dense.bias"],
                    (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
                )
            )
            i += 1

    @classmethod
    def from_path(cls, path: Path) -> NumpyMiniLM:
        from safetensors.numpy import load_file

        return cls(load_file(str(path / "model.safetensors")))

    def _ln(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        x = x - mean
        var = np.square(x).mean(-1, keepdims=True)
        x *= 1.0 / np.sqrt(var + self.eps)
        x *= params[0]
        x += params[1]
        return x

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's token states, (batch, seq, 384)."""
        from scipy.special import erf

        b, s = ids.shape
        h = self.word[ids] + self.pos[:s][None] + self.type0
        h = self._ln(h.reshape(b * s, -1), self.emb_ln)
        d = h.shape[1]
        hd = d // self.heads
        scale = np.float32(1.0 / np.sqrt(hd))
        bias = ((1.0 - mask.astype(np.float32)) * np.float32(-1e9))[:, None, None, :]
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self.layers:
            qkv = h @ qkv_w
            qkv += qkv_b
            qkv = qkv.reshape(b, s, 3, self.heads, hd).transpose(2, 0, 3, 1, 4)  # 3, b, heads, s, hd
            scores = (qkv[0] * scale) @ qkv[1].transpose(0, 1, 3, 2)
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(b * s, d)
            attn = ctx @ o_w
            attn += o_b
            attn += h
            h = self._ln(attn, ln1)
            inter = h @ i_w
            inter += i_b
            inter = 0.5 * inter * (1.0 + erf(inter * np.float32(1.0 / np.sqrt(2.0))))
            out = inter.astype(np.float32, copy=False) @ f_w
            out += f_b
            out += h
            h = self._ln(out, ln2)
        return h.reshape(b, s, d)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over tokens, L2-normalised: sentence-transformers' pooling for this model."""
    m = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return normalize_rows(pooled)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def span_token_ranges(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each character span, the [first, last) token positions whose characters overlap it (specials excluded)."""
    ranges = []
    for start, end in spans:
        toks = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        ranges.append((toks[0], toks[-1] + 1) if toks else (0, 0))
    return ranges


def pool_spans(hidden: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """In-context span vectors: the mean of a span's token states within its chunk, L2-normalised."""
    out = np.zeros((len(ranges), hidden.shape[-1]), dtype=np.float32)
    for k, (a, b) in enumerate(ranges):
        if b > a:
            out[k] = hidden[a:b].mean(0)
    return normalize_rows(out)


def minilm_onnx_graph(weights: dict[str, np.ndarray], *, opset: int = 17) -> Any:
    """MiniLM's BERT encoder as an in-memory ONNX model: (input_ids, attention_mask) -> last_hidden_state.

    The same computation as ``NumpyMiniLM.hidden`` (fused QKV, additive mask, exact GELU via Erf), written with plain
    opset-17 operators (LayerNormalization is native there), left for ORT's own optimiser to fuse (GELU, Add +
    LayerNorm).
    """
    from onnx import TensorProto, helper, numpy_helper

    w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items() if v.dtype != np.int64}
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def layer_norm(x: str, prefix: str, out: str) -> str:
        gamma, beta = const(out + "_g", w[prefix + ".weight"]), const(out + "_b", w[prefix + ".bias"])
        return node("LayerNormalization", [x, gamma, beta], out, axis=-1, epsilon=NumpyMiniLM.eps)

    def dense(x: str, prefix: str, out: str) -> str:
        y = node("MatMul", [x, const(out + "_w", w[prefix + ".weight"].T)], out + "_mm")
        return node("Add", [y, const(out + "_bias", w[prefix + ".bias"])], out)

    heads, d = NumpyMiniLM.heads, w["embeddings.word_embeddings.weight"].shape[1]

    def i64(*v: int) -> np.ndarray:
        return np.array(v, dtype=np.int64)

    f32 = np.float32
    seq = node("Slice", [node("Shape", ["input_ids"], "shape"), const("c1", i64(1)), const("c2", i64(2))], "seq")
    pos = node("Slice", [const("pos", w["embeddings.position_embeddings.weight"]), const("c0", i64(0)), seq], "pos_s")
    h = node("Gather", [const("word", w["embeddings.word_embeddings.weight"]), "input_ids"], "word_e")
    h = node(
        "Add", [node("Add", [h, pos], "emb_wp"), const("type0", w["embeddings.token_type_embeddings.weight"][0])], "emb"
    )
    h = layer_norm(h, "embeddings.LayerNorm", "h")
    keep = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("one", f32(1)), keep], "pad"), const("neg", f32(-1e9))], "mask_b")
    bias = node("Unsqueeze", [bias, const("c12", i64(1, 2))], "mask_bias")  # (batch, 1, 1, seq)
    const("qkv_shape", i64(0, 0, 3, heads, d // heads))
    const("out_shape", i64(0, 0, d))
    const("scale", f32(1.0 / np.sqrt(d // heads)))
    const("rsqrt2", f32(1.0 / np.sqrt(2.0)))
    const("half", f32(0.5))
    i = 0
    while f"encoder.layer.{i}.attention.self.query.weight" in w:
        p, q = f"encoder.layer.{i}.", f"l{i}_"
        for n in ("weight", "bias"):
            w[p + f"qkv.{n}"] = np.concatenate([w[p + f"attention.self.{x}.{n}"] for x in ("query", "key", "value")])
        x = node("Reshape", [dense(h, p + "qkv", q + "qkv"), "qkv_shape"], q + "qkv5")
        x = node("Transpose", [x], q + "qkv_t", perm=[2, 0, 3, 1, 4])  # 3, batch, heads, seq, head_dim
        nodes.append(helper.make_node("Split", [x], [q + "q3", q + "k3", q + "v3"], axis=0))
        qh, kh, vh = (node("Squeeze", [q + t + "3", "c0"], q + t) for t in "qkv")
        scores = node("MatMul", [qh, node("Transpose", [kh], q + "k_t", perm=[0, 1, 3, 2])], q + "qk")
        scores = node("Add", [node("Mul", [scores, "scale"], q + "qk_s"), "mask_bias"], q + "qk_m")
        ctx = node("MatMul", [node("Softmax", [scores], q + "probs", axis=-1), vh], q + "ctx_h")
        ctx = node("Reshape", [node("Transpose", [ctx], q + "ctx_t", perm=[0, 2, 1, 3]), "out_shape"], q + "ctx")
        attn = node("Add", [dense(ctx, p + "attention.output.dense", q + "attn"), h], q + "attn_res")
        h = layer_norm(attn, p + "attention.output.LayerNorm", q + "h1")
        inter = dense(h, p + "intermediate.dense", q + "inter")
        erf = node("Erf", [node("Mul", [inter, "rsqrt2"], q + "gelu_x")], q + "gelu_erf")
        gelu = node(
            "Mul", [node("Mul", [inter, node("Add", [erf, "one"], q + "gelu_1")], q + "gelu_m"), "half"], q + "gelu"
        )
        out = node("Add", [dense(gelu, p + "output.dense", q + "out"), h], q + "out_res")
        h = layer_norm(out, p + "output.LayerNorm", q + "h2")
        i += 1
    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", d])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="rag")
    model.ir_version = 8  # what onnxruntime >= 1.14 reads; onnx's default may be newer than the installed runtime
    return model


class OnnxMiniLM:
    """MiniLM's encoder in ONNX Runtime (one thread per call): token states for ``mean_pool`` and ``pool_spans``."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread per request, like the NumPy path: concurrent requests use the cores, and ORT's thread pool
        # would spin against them on a small machine.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    @classmethod
    def from_path(cls, path: Path) -> OnnxMiniLM:
        from safetensors.numpy import load_file

        return cls(minilm_onnx_graph(load_file(str(path / "model.safetensors"))).SerializeToString())

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's token states, (batch, seq, 384)."""
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
