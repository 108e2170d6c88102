"""vqzip: a command-line image compressor built on a learned discrete-token codec.

`compress`, `decompress` and `load_model` are imported lazily, so `import vqzip` (and `vqzip --help`)
stays fast and does not load torch.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "compress", "decompress", "load_model"]


def __getattr__(name: str) -> Any:
    if name in ("compress", "decompress", "load_model", "compress_images", "decompress_images"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vqzip' has no attribute {name!r}")
