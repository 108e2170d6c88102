"""Token sets: the token grids of many images in one file, for ML work (`vqzip tokens`, `vqzip detokenize`).

Two layouts, chosen by the file's extension:

- `.safetensors` (any mix of image sizes): for each image size H x W, a tensor `tokens.HxW` of shape
  (n, L, h, w) (n images of that size, L token levels or channels, an h x w grid), `index.HxW` (n,)
  int64, each image's position in the input order (the `names` list), and for a data set with labels
  `labels.HxW` (n,) int64. The metadata (string -> string) holds `format` ("vqzip-tokens-1"), `model`,
  `model_id` (4 hex digits, as in a .vqz header), `quality`, and JSON: `info` (stride, levels,
  vocab_sizes: the alphabet of each level, or null where the model has none; whatever
  `api.token_info` says), `names` (one per input, in input order) and `source`.
- `.npy` (one image size only): the (N, L, h, w) array, and beside it `<stem>.json` with the same
  metadata plus `size` ([H, W]), `index` and, for a data set, `labels`.

Tokens are int16, or int32 where a value does not fit. Nothing here needs torch.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VqzipError

FORMAT = "vqzip-tokens-1"
KINDS = (".safetensors", ".npy")


@dataclass
class TokenGroup:
    """The images of one size: their tokens, where each stands in the input order, their labels."""
    size: tuple[int, int]  # image (height, width) in pixels
    tokens: np.ndarray  # (n, L, h, w)
    index: np.ndarray  # (n,) int64
    labels: np.ndarray | None = None  # (n,) int64

    @property
    def key(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


@dataclass
class TokenSet:
    model: str
    model_id: int
    quality: int
    info: dict[str, Any]  # api.token_info: stride, levels, vocab_sizes, ...
    names: list[str]  # every input, in input order (index arrays point into it)
    groups: list[TokenGroup] = field(default_factory=list)
    source: str = ""

    @property
    def count(self) -> int:
        return sum(len(g.index) for g in self.groups)

    def _meta(self) -> dict[str, str]:
        return {"format": FORMAT, "model": self.model, "model_id": f"{self.model_id:04x}", "quality": str(self.quality),
                "info": json.dumps(self.info), "names": json.dumps(self.names), "source": self.source}


def compact(tokens: np.ndarray) -> np.ndarray:
    """Tokens as int16 where every value fits, else int32."""
    if tokens.size == 0 or (tokens.min() >= np.iinfo(np.int16).min and tokens.max() <= np.iinfo(np.int16).max):
        return tokens.astype(np.int16)
    return tokens.astype(np.int32)


def kind(path: Path | str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in KINDS:
        raise VqzipError(f"{path}: a token file ends in .safetensors or .npy, not {suffix or 'nothing'!r}")
    return suffix


def sidecar(path: Path | str) -> Path:
    """Where a .npy token file keeps its metadata: <stem>.json beside it."""
    return Path(path).with_suffix(".json")


def encode(ts: TokenSet, path: Path | str, layout: str | None = None) -> list[tuple[Path, bytes]]:
    """The files (path, bytes) that hold `ts` at `path`: one .safetensors, or a .npy and its .json
    (`layout`, one of KINDS, overrides the extension: shards are .safetensors whatever their name)."""
    from safetensors.numpy import save

    if (layout or kind(path)) == ".safetensors":
        tensors: dict[str, np.ndarray] = {}
        for g in ts.groups:
            tensors[f"tokens.{g.key}"] = np.ascontiguousarray(g.tokens)
            tensors[f"index.{g.key}"] = g.index.astype(np.int64)
            if g.labels is not None:
                tensors[f"labels.{g.key}"] = g.labels.astype(np.int64)
        return [(Path(path), save(tensors, metadata=ts._meta()))]
    if len(ts.groups) != 1:
        sizes = ", ".join(g.key for g in ts.groups) or "none"
        raise VqzipError(f"{path}: a .npy file holds images of one size, these have {len(ts.groups)} ({sizes}); "
                         "write a .safetensors file")
    [g] = ts.groups
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(g.tokens))
    meta: dict[str, Any] = {**ts._meta(), "info": ts.info, "names": ts.names, "size": list(g.size),
                            "index": g.index.tolist()}
    if g.labels is not None:
        meta["labels"] = g.labels.tolist()
    return [(Path(path), buf.getvalue()), (sidecar(path), (json.dumps(meta) + "\n").encode())]


def read(path: Path | str, layout: str | None = None) -> TokenSet:
    """A token file written by `encode` (either layout); VqzipError when it is not one."""
    path = Path(path)
    try:
        if (layout or kind(path)) == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if meta.get("format") != FORMAT:
                raise VqzipError(f"{path}: not a vqzip token file")
            groups = []
            for key in sorted(k[len("tokens."):] for k in tensors if k.startswith("tokens.")):
                h, w = (int(v) for v in key.split("x"))
                groups.append(TokenGroup((h, w), tensors[f"tokens.{key}"], tensors[f"index.{key}"],
                                         tensors.get(f"labels.{key}")))
            return TokenSet(meta["model"], int(meta["model_id"], 16), int(meta["quality"]), json.loads(meta["info"]),
                            json.loads(meta["names"]), groups, meta.get("source", ""))
        side = sidecar(path)
        if not side.is_file():
            raise VqzipError(f"{path}: its metadata {side.name} is missing beside it")
        meta = json.loads(side.read_text())
        if meta.get("format") != FORMAT:
            raise VqzipError(f"{side}: not the metadata of a vqzip token file")
        tokens = np.load(path, allow_pickle=False)
        labels = np.asarray(meta["labels"], np.int64) if "labels" in meta else None
        group = TokenGroup((int(meta["size"][0]), int(meta["size"][1])), tokens, np.asarray(meta["index"], np.int64), labels)
        return TokenSet(meta["model"], int(meta["model_id"], 16), int(meta["quality"]), meta["info"], meta["names"],
                        [group], meta.get("source", ""))
    except VqzipError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VqzipError(f"{path}: not a readable vqzip token file ({exc})") from None


def merge(parts: list[TokenSet]) -> TokenSet:
    """One token set from the shards of one job (same model, quality and names; disjoint indices), each
    size's images in input order."""
    first = parts[0]
    sizes: dict[tuple[int, int], list[TokenGroup]] = {}
    for p in parts:
        if (p.model_id, p.quality, p.names) != (first.model_id, first.quality, first.names):
            raise VqzipError("token shards of different jobs cannot be merged")
        for g in p.groups:
            sizes.setdefault(g.size, []).append(g)
    groups = []
    for size in sorted(sizes):
        gs = sizes[size]
        index = np.concatenate([g.index for g in gs])
        order = np.argsort(index, kind="stable")
        have = [g.labels for g in gs if g.labels is not None]
        labels = np.concatenate(have)[order] if len(have) == len(gs) else None
        groups.append(TokenGroup(size, compact(np.concatenate([g.tokens for g in gs])[order]), index[order], labels))
    return TokenSet(first.model, first.model_id, first.quality, first.info, first.names, groups, first.source)
