"""Quantizers, one self-contained module each, all behind `Quantizer` (see base.py)."""
from __future__ import annotations

import importlib
from typing import Any

from .base import Quantizer, QuantizerOutput

# name -> (module, class); modules are imported on demand so one broken quantizer never blocks another
REGISTRY: dict[str, tuple[str, str]] = {
    "vq": ("vq", "VQ"),
    "rvq": ("rvq", "RVQ"),
    "byte": ("byte", "ByteQuantizer"),
    "simvq": ("simvq", "SimVQ"),
    "fsq": ("fsq", "FSQ"),
    "lfq": ("lfq", "LFQ"),
    "identity": ("identity", "Identity"),  # no quantization (plain autoencoder), for studies
}


def build_quantizer(kind: str, dim: int, **kwargs: Any) -> Quantizer:
    """Instantiate a quantizer by its registry name with the latent dimension `dim`."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown quantizer {kind!r}; choose one of {', '.join(REGISTRY)}")
    module, cls = REGISTRY[kind]
    return getattr(importlib.import_module(f".{module}", __name__), cls)(dim, **kwargs)


__all__ = ["Quantizer", "QuantizerOutput", "REGISTRY", "build_quantizer"]
