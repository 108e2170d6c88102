"""Which engine runs a model's networks: ONNX Runtime (the default, no torch needed) or torch.

A model's coding graphs (codec.graphs: encode/decode, or analysis/hyper_analysis/synthesis) are
`<name>.<graph>.onnx` files beside its weights, written by `vqzip export-onnx` (codec.onnx_export).
Both engines take and give numpy arrays through `Nets.run(graph, **inputs)`; everything around the
networks (tiling, tokens, integer tables, the range coder) is numpy and constriction either way.

$VQZIP_BACKEND picks the engine: "onnx", "torch", or "auto" (default: ONNX Runtime where the model has
its graphs and onnxruntime is installed, else torch where installed).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ModelNotFound, VqzipError

if TYPE_CHECKING:  # numpy is imported by those who call: -j sets its thread variables before that
    import numpy as np

WEIGHTS_DIGEST_KEY = "vqzip.weights_sha256"  # in each .onnx file's metadata: the weights it reads
BACKENDS = ("auto", "onnx", "torch")
TRAIN_EXTRA = "pip install 'vqzip[train]'"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # OpenMP, and numpy's BLAS
_threads: int | None = None  # None: ONNX Runtime's own default (one thread per physical core)


class Nets(Protocol):
    def run(self, graph: str, **inputs: np.ndarray) -> np.ndarray: ...


def onnx_path(weights: Path, graph: str) -> Path:
    """Where a model's graph lives: beside its weights, `<name>.<graph>.onnx`."""
    return weights.with_name(f"{weights.name.removesuffix('.safetensors')}.{graph}.onnx")


def set_threads(n: int) -> None:
    """Threads for the ONNX Runtime sessions created from now on."""
    global _threads
    _threads = n


@contextmanager
def one_thread_children() -> Iterator[None]:
    """Processes started inside this block run numpy's BLAS and OpenMP on one thread (they read these
    variables when they import numpy; this process's own BLAS is already set). Without it, each of
    two worker processes on two cores kept a BLAS thread per core yielding: the fuzz campaign ran at
    155 inputs/s instead of 680, and a cheap input could wait seconds for a core."""
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    os.environ.update({var: "1" for var in THREAD_VARS})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def requires_torch(what: str) -> Any:
    """Import torch for `what`, or a one-line VqzipError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise VqzipError(f"{what} needs torch, which is not installed; {TRAIN_EXTRA}") from None
    return torch


class OnnxNets:
    """A model's graphs in ONNX Runtime, one session per graph, made when first run."""

    def __init__(self, weights: Path, digest: bytes, graphs: tuple[str, ...]) -> None:
        self.weights, self.digest, self.graphs = weights, digest, graphs
        self._sessions: dict[str, Any] = {}
        self._inputs: dict[str, list[str]] = {}  # each graph's input names, asked of its session once

    def session(self, graph: str) -> Any:
        if graph not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: its warnings are about its own optimiser
            if _threads:
                options.intra_op_num_threads = _threads
            options.inter_op_num_threads = 1
            # no memory pattern: ORT plans and keeps one arena block per input shape it has seen, and a
            # tiled photo's edge tiles have other shapes (benchmarks/many_photos_memory.py, memory_24mp.py)
            options.enable_mem_pattern = False
            # no spinning after a run: the range coder and numpy run next on the same cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            path = onnx_path(self.weights, graph)
            try:
                s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise ModelNotFound(f"{path.name} does not load ({str(exc).splitlines()[0][:200]}); "
                                    f"rewrite it with 'vqzip export-onnx {self.weights}'") from None
            if s.get_modelmeta().custom_metadata_map.get(WEIGHTS_DIGEST_KEY) != self.digest.hex():
                raise ModelNotFound(f"{path.name} was made from other weights than {self.weights.name}; "
                                    f"rewrite it with 'vqzip export-onnx {self.weights}'")
            self._sessions[graph] = s
        return self._sessions[graph]

    def run(self, graph: str, **inputs: np.ndarray) -> np.ndarray:
        """The graph's output; inputs it does not use (the exporter drops them) are left out."""
        s = self.session(graph)
        if graph not in self._inputs:
            self._inputs[graph] = [i.name for i in s.get_inputs()]
        out: np.ndarray = s.run(None, {name: inputs[name] for name in self._inputs[graph]})[0]
        return out


def backend() -> str:
    choice = os.environ.get("VQZIP_BACKEND", "auto")
    if choice not in BACKENDS:
        raise VqzipError(f"VQZIP_BACKEND must be one of {', '.join(BACKENDS)}, not {choice!r}")
    return choice


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def load_nets(weights: Path, digest: bytes, graphs: tuple[str, ...], torch_codec: Any) -> Nets:
    """The engine for a model: OnnxNets when its graphs exist (and the backend allows), else torch's
    (`torch_codec()` builds the torch module)."""
    choice = backend()
    have_onnx = all(onnx_path(weights, g).is_file() for g in graphs)
    if choice == "onnx" or (choice == "auto" and have_onnx and _has_onnxruntime()):
        if not have_onnx:
            raise ModelNotFound(f"model {weights.name} has no ONNX graphs; write them with 'vqzip export-onnx {weights}'")
        if not _has_onnxruntime():
            raise VqzipError("VQZIP_BACKEND=onnx needs onnxruntime, which is not installed; pip install onnxruntime")
        return OnnxNets(weights, digest, graphs)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ModelNotFound(f"model {weights.name} has no ONNX graphs and torch is not installed: write them with "
                            f"'vqzip export-onnx {weights}' where torch is ({TRAIN_EXTRA})") from None
    from .codec.graphs import TorchNets

    return TorchNets(torch_codec())
