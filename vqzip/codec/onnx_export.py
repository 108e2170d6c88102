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
        nodes = list(model.graph.node)
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
