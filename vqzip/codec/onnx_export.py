"""Write a model's coding graphs (codec.graphs) as `.onnx` files beside its weights, for vqzip.runtime.

The `.onnx` files hold only the graph: every weight is an external-data reference into the model's
`.safetensors` file (safetensors stores raw little-endian arrays at known offsets, which is what ONNX
external data is), so the weights stay the one source of truth, exist once on disk, and a graph
cannot drift from them; float16 weights are cast to float32 inside the graph. Each file also records
the SHA-256 of the weights it was made from, which the runtime checks (vqzip.runtime.OnnxNets).
"""
from __future__ import annotations

import io
import json
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from ..runtime import WEIGHTS_DIGEST_KEY, onnx_path
from .graphs import graphs
from .hyperprior import PhotoCodec
from .model import Codec

OPSET = 17
_DTYPES = {"F32": 1, "F16": 10, "BF16": 16, "I64": 7, "I32": 6, "I16": 5, "I8": 3, "U8": 2, "U16": 4, "BOOL": 9}  # ONNX codes


def safetensors_index(path: Path) -> dict[str, tuple[str, list[int], int, int]]:
    """name -> (dtype, shape, byte offset in the file, byte length) of every tensor of a safetensors file."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {name: (e["dtype"], e["shape"], 8 + size + e["data_offsets"][0], e["data_offsets"][1] - e["data_offsets"][0])
            for name, e in header.items() if name != "__metadata__"}


def export_onnx(weights: Path, codec: Codec | PhotoCodec, digest: bytes) -> list[Path]:
    """Trace every coding graph of `codec` (loaded from `weights`, whose SHA-256 is `digest`) and write
    `<name>.<graph>.onnx` beside `weights`, atomically; returns the paths."""
    import onnx
    from onnx import TensorProto, helper

    index = safetensors_index(weights)
    written = []
    todo = graphs(codec)
    for old in weights.parent.glob(onnx_path(weights, "*").name):  # graphs this model no longer has
        if old.name not in {onnx_path(weights, name).name for name in todo}:
            old.unlink()
    for name, g in todo.items():
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing (shapes become dynamic as asked)
            torch.onnx.export(g.module, tuple(g.example.values()), buf,  # type: ignore[arg-type]  # a file object works
                              dynamo=False, opset_version=OPSET, input_names=list(g.example),
                              output_names=[g.output], dynamic_axes=g.axes,
                              do_constant_folding=False)  # keep parameters as they are stored; ORT folds at load
        model = onnx.load_from_string(buf.getvalue())
        casts, inits = [], []
        for init in model.graph.initializer:
            key = init.name.removeprefix("c.")
            if key not in index:  # a constant of the graph itself (shapes, scalars): stays inside
                inits.append(init)
                continue
            dtype, shape, offset, length = index[key]
            if list(init.dims) != shape:
                raise ValueError(f"{key}: graph shape {list(init.dims)} is not the stored {shape}")
            ref = TensorProto(name=init.name, data_type=_DTYPES[dtype], dims=shape, data_location=TensorProto.EXTERNAL)
            if ref.data_type != init.data_type:  # stored narrower (float16): cast in the graph
                ref.name = init.name + ":stored"
                casts.append(helper.make_node("Cast", [ref.name], [init.name], to=init.data_type))
            for k, v in (("location", weights.name), ("offset", str(offset)), ("length", str(length))):
                entry = ref.external_data.add()
                entry.key, entry.value = k, v
            inits.append(ref)
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
        nodes = [new for node in model.graph.node for new in _as_subpixel_conv(node, index)]
        del model.graph.node[:]
        model.graph.node.extend(casts + nodes)
        helper.set_model_props(model, {WEIGHTS_DIGEST_KEY: digest.hex(), "vqzip.graph": name})
        out = onnx_path(weights, name)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(model.SerializeToString())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        written.append(out)
    return written


# the taps of a 5x5 stride-2 kernel that output phase p reads at offsets -1, 0, 1: 2 + p - 2d (5: none)
_PHASE_TAPS = [4, 2, 0, 5, 3, 1]


def _as_subpixel_conv(node: Any, index: dict[str, tuple[str, list[int], int, int]]) -> list[Any]:
    """`node`, or, if it is a 5x5 stride-2 ConvTranspose of a stored weight (padding 2, output padding
    1: a photo synthesis' upsampling), the same map as a 3x3 convolution to 4x the channels followed by
    a depth-to-space: ONNX Runtime's transposed convolution keeps a column buffer of C_out x 25 x the
    input positions (340 MB above the rest for a 576x576 synthesis, against 122 MB rewritten). The
    kernel is rearranged from the stored weight inside the graph, which ONNX Runtime folds at load."""
    from onnx import helper

    attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    weight = index.get(node.input[1].removeprefix("c.")) if len(node.input) > 2 else None
    if node.op_type != "ConvTranspose" or weight is None or attrs.get("strides") != [2, 2] or \
            attrs.get("kernel_shape", weight[1][2:]) != [5, 5] or attrs.get("pads") != [2, 2, 2, 2] or \
            attrs.get("output_padding") != [1, 1] or attrs.get("group", 1) != 1 or attrs.get("dilations", [1, 1]) != [1, 1]:
        return [node]
    cin, cout = weight[1][:2]
    w, b, name = node.input[1], node.input[2], node.output[0] + ":subpixel"

    def const(suffix: str, values: list[int]) -> Any:
        return helper.make_node("Constant", [], [f"{name}.{suffix}"], value=helper.make_tensor(
            f"{name}.{suffix}", 7, [len(values)], values))  # int64

    return [const("pads", [0, 0, 0, 0, 0, 0, 1, 1]), const("taps", _PHASE_TAPS),
            const("split", [cin, cout, 2, 3, 2, 3]), const("kernel", [4 * cout, cin, 3, 3]),
            const("axes", [1]), const("pairs", [cout, 4]), const("flat", [4 * cout]),
            helper.make_node("Pad", [w, f"{name}.pads"], [f"{name}.padded"]),
            helper.make_node("Gather", [f"{name}.padded", f"{name}.taps"], [f"{name}.rows"], axis=2),
            helper.make_node("Gather", [f"{name}.rows", f"{name}.taps"], [f"{name}.taps2"], axis=3),
            helper.make_node("Reshape", [f"{name}.taps2", f"{name}.split"], [f"{name}.phases"]),
            helper.make_node("Transpose", [f"{name}.phases"], [f"{name}.ordered"], perm=[1, 2, 4, 0, 3, 5]),
            helper.make_node("Reshape", [f"{name}.ordered", f"{name}.kernel"], [f"{name}.w"]),
            helper.make_node("Unsqueeze", [b, f"{name}.axes"], [f"{name}.b1"]),
            helper.make_node("Expand", [f"{name}.b1", f"{name}.pairs"], [f"{name}.b4"]),
            helper.make_node("Reshape", [f"{name}.b4", f"{name}.flat"], [f"{name}.b"]),
            helper.make_node("Conv", [node.input[0], f"{name}.w", f"{name}.b"], [f"{name}.conv"],
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("DepthToSpace", [f"{name}.conv"], [node.output[0]], blocksize=2, mode="CRD")]
