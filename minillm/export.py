"""Export a trained GPT's forward pass (token ids → logits) to ONNX with the ``onnx``
package's graph API, node by node, so it runs in onnxruntime or any ONNX engine.
Needs the optional extra: ``pip install 'minillm[export]'``."""
import math

import numpy as np

from .fileio import write_atomic
from .models import GPT


def export_onnx(model, path, opset=17):
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise RuntimeError("export: the onnx package is not installed (pip install 'minillm[export]')") from None
    if not isinstance(model, GPT):
        raise ValueError(f"export: only GPT models can be exported to ONNX; got {type(model).__name__}")
    config = model.config
    c, heads = config.n_embd, config.n_head
    nodes, inits = [], []
    counter = [0]

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, **attrs):
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def weight(p, transpose=False):
        array = p.numpy().astype(np.float32)
        return const(f"w{len(inits)}", array.T.copy() if transpose else array)

    def linear(x, layer):
        y = node("MatMul", [x, weight(layer.weight, transpose=True)])
        return node("Add", [y, weight(layer.bias)]) if layer.bias is not None else y

    def thirds(qkv):
        """q, k and v: the three (B, T, C) column blocks of c_attn's (B, T, 3C) output."""
        counter[0] += 1
        outs = [f"{part}_{counter[0]}" for part in "qkv"]
        nodes.append(helper.make_node("Split", [qkv, thirds_sizes], outs, axis=-1))
        return outs

    def layer_norm(x, ln):
        return node("LayerNormalization", [x, weight(ln.weight), weight(ln.bias)], axis=-1, epsilon=ln.eps)

    # positions 0..T-1 and the causal mask's top-left T×T corner, from the input's shape
    t = node("Gather", [node("Shape", ["idx"]), const("one", np.array(1, np.int64))], axis=0)
    positions = node("Range", [const("zero", np.array(0, np.int64)), t, const("step", np.array(1, np.int64))])
    t_pair = node("Concat", [node("Unsqueeze", [t, const("axis0", np.array([0], np.int64))])] * 2, axis=0)
    block_mask = np.triu(np.full((config.block_size, config.block_size), -np.inf, np.float32), 1)
    mask = node("Slice", [const("mask", block_mask), const("starts", np.array([0, 0], np.int64)), t_pair,
                          const("axes", np.array([0, 1], np.int64))])
    heads_shape = const("heads_shape", np.array([0, 0, heads, c // heads], np.int64))
    merged_shape = const("merged_shape", np.array([0, 0, c], np.int64))
    thirds_sizes = const("thirds_sizes", np.array([c, c, c], np.int64))
    scale = const("scale", np.array(1 / math.sqrt(c // heads), np.float32))
    half, one, k_cubic = (const(n, np.array(v, np.float32)) for n, v in
                          (("half", 0.5), ("onef", 1.0), ("cubic", 0.044715)))
    root = const("root2pi", np.array(math.sqrt(2 / math.pi), np.float32))

    x = node("Add", [node("Gather", [weight(model.wte.weight), "idx"]),
                     node("Gather", [weight(model.wpe.weight), positions])])          # (B, T, C)
    for block in model.blocks:
        h = layer_norm(x, block.ln_1)
        attn = block.attn
        to_heads = lambda z, perm: node("Transpose", [node("Reshape", [z, heads_shape])], perm=perm)  # noqa: E731
        q, k, v = thirds(linear(h, attn.c_attn))                          # (B, T, C) each, of c_attn's (B, T, 3C)
        q = to_heads(q, [0, 2, 1, 3])                                                 # (B, nh, T, hs)
        k = to_heads(k, [0, 2, 3, 1])                                                 # (B, nh, hs, T)
        v = to_heads(v, [0, 2, 1, 3])                                                 # (B, nh, T, hs)
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), mask])
        y = node("MatMul", [node("Softmax", [scores], axis=-1), v])                  # (B, nh, T, hs)
        y = node("Reshape", [node("Transpose", [y], perm=[0, 2, 1, 3]), merged_shape])  # (B, T, C)
        x = node("Add", [x, linear(y, attn.c_proj)])
        f = linear(layer_norm(x, block.ln_2), block.mlp.fc)
        inner = node("Mul", [root, node("Mul", [f, node("Add", [one, node("Mul", [k_cubic, node("Mul", [f, f])])])])])
        gelu = node("Mul", [node("Mul", [half, f]), node("Add", [one, node("Tanh", [inner])])])
        x = node("Add", [x, linear(gelu, block.mlp.proj)])
    nodes.append(helper.make_node("MatMul", [layer_norm(x, model.ln_f), weight(model.lm_head.weight, transpose=True)],
                                  ["logits"]))

    graph = helper.make_graph(
        nodes, "minillm_gpt",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", "time"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "time", config.vocab_size])],
        inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="minillm")
    onnx_model.ir_version = min(onnx_model.ir_version, 9)
    onnx.checker.check_model(onnx_model)
    write_atomic(path, lambda tmp: onnx.save(onnx_model, str(tmp)))
    return path
