"""Finding and loading models: by name, by path, or by the 16-bit id a .vqz file carries.

A model is `<name>.safetensors` (weights, integer prior tables, config in the metadata; no pickle) plus
`<name>.json`, its model card, and optionally `<name>.prior.safetensors`, its learned context prior.
The model id is the first two bytes of the SHA-256 of the weights file, so any change of weights or
tables makes a new id. The context prior lives in its own file so that adding one to a model leaves
the model's id, and every file written before, intact; a version-2 file is bound to the exact prior
through its checksum key (see LoadedModel.key).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ModelNotFound

DEFAULT_MODEL = "small-cbr"  # small images (vqzip.pick), and the model load_model(None) gives
TOKEN_MODEL = "cifar10-rvq"  # what --prior static|context without -m codes with: a token model has such tables
DEFAULT_PHOTO_MODEL = "photo-cbr128"  # the photo ladder's low rungs (vqzip.pick)
HIGH_RATE_PHOTO_MODEL = "photo-s8"  # the photo ladder's high rungs (vqzip.pick)
SUFFIX = ".safetensors"
PRIOR_SUFFIX = ".prior.safetensors"


def _model_files(d: Path) -> list[Path]:
    return [p for p in sorted(d.glob(f"*{SUFFIX}")) if not p.name.endswith(PRIOR_SUFFIX)]


def prior_path(model_path: Path) -> Path:
    """Where a model's context prior lives: beside it, `<name>.prior.safetensors`."""
    return model_path.with_name(model_path.name[: -len(SUFFIX)] + PRIOR_SUFFIX)


@cache
def _installed_dirs() -> list[Path]:
    """The package's models and the source tree's models/: fixed for the life of the process."""
    dirs = []
    try:
        dirs.append(Path(str(resources.files("vqzip.models"))))
    except (ModuleNotFoundError, TypeError):
        pass
    return dirs + [Path(__file__).resolve().parent.parent / "models"]


def model_dirs() -> list[Path]:
    """$VQZIP_MODELS (os.pathsep-separated), then the models installed with the package, then the
    source tree's models/ (running from a checkout)."""
    dirs = [Path(p) for p in os.environ.get("VQZIP_MODELS", "").split(os.pathsep) if p] + _installed_dirs()
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def _names_in(dirs: list[Path]) -> list[str]:
    """Model names in `dirs`, each once, in the order first found."""
    names: list[str] = []
    for d in dirs:
        if d.is_dir():
            names += [p.name[: -len(SUFFIX)] for p in _model_files(d) if p.name[: -len(SUFFIX)] not in names]
    return names


def shipped_models() -> list[str]:
    """The models installed with vqzip itself (not $VQZIP_MODELS'): what the fuzzer seeds from and the
    tests and benchmarks check, so a model added to models/ is covered without editing a list."""
    return sorted(_names_in(_installed_dirs()))


def available_models() -> list[str]:
    return _names_in(model_dirs())


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """The weights file of a model given by name or by path (with or without the suffix)."""
    name = str(name_or_path or DEFAULT_MODEL)
    explicit = [Path(name), Path(name + SUFFIX)] if (os.sep in name or name.endswith(SUFFIX)) else []
    for c in itertools.chain(explicit, (d / (name + SUFFIX) for d in model_dirs())):
        if c.is_file() and not c.name.endswith(PRIOR_SUFFIX):
            return c.resolve()
    raise ModelNotFound(f"model {name!r} not found; available: {', '.join(available_models()) or 'none'}")


@cache
def digest(path: Path) -> bytes:
    h = hashlib.sha256()  # not hashlib.file_digest: that is Python 3.11+
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def model_id(path: Path) -> int:
    return int.from_bytes(digest(path)[:2], "big")


@lru_cache(maxsize=32)
def _ids_in(d: Path, names: tuple[str, ...]) -> dict[int, Path]:
    """Model id -> weights file, of the models in folder `d` while it holds the files `names`: decoding
    a file finds its model without resolving and hashing every installed model's path again."""
    ids: dict[int, Path] = {}
    for p in _model_files(d):
        ids.setdefault(model_id(p.resolve()), p.resolve())
    return ids


@lru_cache(maxsize=32)
def _claims_in(d: Path, names: tuple[str, ...]) -> dict[str, list[Path]]:
    """Model id (as its card writes it) -> the weights files in folder `d` whose card names it, while
    `d` holds the files `names`: read once, not for every file a batch decodes (17 cards cost 2.5 ms)."""
    claims: dict[str, list[Path]] = {}
    for p in _model_files(d):
        try:
            claimed = read_card(p).get("model_id")
        except (OSError, ValueError, AttributeError):
            continue  # no card, or not one: the full search in find_by_id still finds the model
        if isinstance(claimed, str):
            claims.setdefault(claimed, []).append(p.resolve())
    return claims


def _claiming(d: Path, mid: int) -> list[Path]:
    """The weights files in folder `d` whose model card names id `mid`: checked first, so that decoding
    hashes one model, not every installed one (about 150 MB, 0.13 s a process here). A claim is
    only a hint (find_by_id checks the digest), so a card edited since it was read costs a search,
    never a wrong model."""
    return _claims_in(d, tuple(sorted(os.listdir(d)))).get(f"{mid:04x}", [])


def find_by_id(mid: int) -> Path:
    """The installed model whose id is `mid` (a card's claim is only a hint: the weights' digest
    decides); the error names the id so the user can find it."""
    for d in model_dirs():
        for p in _claiming(d, mid):
            if model_id(p) == mid:
                return p
    for d in model_dirs():
        found = _ids_in(d, tuple(sorted(os.listdir(d)))).get(mid)
        if found is not None:
            return found
    raise ModelNotFound(f"this file needs model id {mid:04x}, which is not installed "
                        f"(installed: {', '.join(f'{n} ({model_id(resolve(n)):04x})' for n in available_models()) or 'none'}); "
                        "install it or point VQZIP_MODELS at its folder")


def checksum_key(path: Path, version: int) -> bytes:
    """What seeds the checksum of a file of this format version: the weights' digest (versions 1 and
    3-8, whose tables live in the weights file), or the digest of weights and context prior together (2)."""
    if version != 2:
        return digest(path)
    prior = prior_path(path)
    if not prior.is_file():
        raise ModelNotFound(f"this file needs the context prior of model {path.name[: -len(SUFFIX)]} "
                            f"({prior.name}), which is not installed")
    return hashlib.sha256(digest(path) + digest(prior.resolve())).digest()


def read_card(path: Path) -> dict[str, Any]:
    card = path.with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


# --- loading and saving weights ------------------------------------------------------------------

TRAINING_ONLY = ("ema_sum", "ema_count", "idle_steps")  # VQ buffers needed to train, not to code
PHOTO_CODER_PREFIX = "coding."  # the photo codec's integer tables, beside its weights


@dataclass
class LoadedModel:
    """A model as coding needs it: its configuration, integer tables and networks. Loading needs no
    torch: the networks run through vqzip.runtime (ONNX Runtime by default); `codec`, the torch module,
    is built only when something asks for it (training, --effort, the torch backend)."""

    name: str
    path: Path
    config: Any  # vqzip.codec.config.CodecConfig or PhotoConfig
    prior: Any  # vqzip.coding.priors.StaticPrior, or vqzip.coding.gaussian.HyperpriorCoder
    card: dict[str, Any] = field(default_factory=dict)
    context: Any = None  # vqzip.coding.priors.ContextPrior, when <name>.prior.safetensors exists
    context_path: Path | None = None

    @property
    def digest(self) -> bytes:
        return digest(self.path)

    @property
    def model_id(self) -> int:
        return model_id(self.path)

    def key(self, version: int) -> bytes:
        return checksum_key(self.path, version)

    @property
    def qualities(self) -> int:
        return int(self.config.qualities)

    @property
    def stride(self) -> int:
        """Pixels per position of the coarsest grid a file's size is padded to."""
        return int(self.config.stride)

    @property
    def is_hyperprior(self) -> bool:
        """A rate-distortion photo codec (format version 3) rather than a token-level model."""
        return bool(getattr(self.config, "kind", "") == "hyperprior")

    @property
    def default_quality(self) -> int:
        return int(self.card.get("default_quality", (self.qualities + 1) // 2))

    @property
    def graphs(self) -> tuple[str, ...]:
        from .codec.config import graph_names

        return graph_names(self.config)

    @cached_property
    def nets(self) -> Any:
        """The networks, as vqzip.runtime.Nets: ONNX Runtime where the model has its graphs."""
        from .runtime import load_nets

        return load_nets(self.path, self.digest, self.graphs, lambda: self.codec)

    @cached_property
    def codec(self) -> Any:
        """The torch module (codec.model.Codec or codec.hyperprior.PhotoCodec), in eval mode."""
        from .runtime import requires_torch

        requires_torch(f"model {self.name}'s torch networks")
        return _torch_codec(self.path, self.config)


def _torch_codec(path: Path, config: Any) -> Any:
    from safetensors.torch import load_file

    from .coding.priors import PREFIX

    tensors = load_file(str(path))
    if getattr(config, "kind", "") == "hyperprior":
        from .codec.hyperprior import PhotoCodec

        codec: Any = PhotoCodec(config)
        weights = {k: v.float() for k, v in tensors.items() if not k.startswith(PHOTO_CODER_PREFIX)}
        missing, unexpected = codec.load_state_dict(weights, strict=False)
    else:
        from .codec.model import Codec

        codec = Codec(config)
        missing, unexpected = codec.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(PREFIX)},
                                                    strict=False)
        missing = [k for k in missing if not k.endswith(TRAINING_ONLY)]
    if missing or unexpected:
        raise ModelNotFound(f"{path} does not match its own config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return codec.eval()


@lru_cache(maxsize=8)
def _load(path: Path) -> LoadedModel:
    from safetensors import safe_open

    from .codec.config import PhotoConfig, config_from_dict
    from .coding.priors import PREFIX, StaticPrior

    try:
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            config = config_from_dict(json.loads(meta["config"]))
            prefix = PHOTO_CODER_PREFIX if isinstance(config, PhotoConfig) else PREFIX
            tables = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
            if isinstance(config, PhotoConfig) and PHOTO_CODER_PREFIX + "hs.out.weight" not in tables:
                from .coding.gaussian import derived_layers

                weights = {k: f.get_tensor(k) for k in f.keys() if k.startswith(("h_s.", "context."))}
                tables.update({PHOTO_CODER_PREFIX + k: v for k, v in derived_layers(weights).items()})
        config.qualities  # noqa: B018  (an unknown quantizer fails here, as unreadable)
    except Exception as exc:
        raise ModelNotFound(f"{path} is not a readable vqzip model ({exc})") from None
    name = path.name[: -len(SUFFIX)]
    if isinstance(config, PhotoConfig):
        from .coding.gaussian import HyperpriorCoder

        try:
            coder = HyperpriorCoder({k[len(PHOTO_CODER_PREFIX):]: v for k, v in tables.items()}, config.prior_block)
        except (KeyError, ValueError) as exc:
            raise ModelNotFound(f"{path} holds no valid hyperprior tables ({exc})") from None
        return LoadedModel(name, path, config, coder, read_card(path))
    prior = StaticPrior.from_tensors(tables)
    context, cpath = None, prior_path(path)
    if cpath.is_file():
        context = _load_context(cpath)
    return LoadedModel(name, path, config, prior, read_card(path), context, cpath if context is not None else None)


def save_photo_model(path: Path, codec: Any, coder_tensors: dict[str, Any]) -> Path:
    """Write a photo codec's weights (float16: half the size, and the decoder is float anyway) and its
    coder's stored tables (coding.gaussian.STORED_TABLES of `coder_tensors`), with its config, to
    `path` atomically; returns the path. The coder's integer networks are derived from the float16
    weights at load (coding.gaussian.derived_layers), not stored."""
    import numpy as np
    import torch

    from .coding.gaussian import STORED_TABLES

    tensors = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in codec.state_dict().items()}
    tensors.update({PHOTO_CODER_PREFIX + k: torch.from_numpy(np.ascontiguousarray(coder_tensors[k])) for k in STORED_TABLES})
    return export_onnx(_write_weights(path, tensors, codec.config.to_dict()), codec)


def _load_context(path: Path) -> Any:
    from safetensors import safe_open

    from .coding.priors import ContextPrior

    try:
        with safe_open(str(path), "np") as f:  # one read for metadata and tensors
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return ContextPrior.from_tensors(json.loads(meta["config"]), tensors)
    except Exception as exc:
        raise ModelNotFound(f"{path} is not a readable vqzip context prior ({exc})") from None


def load_model(name_or_path: str | os.PathLike | None = None) -> LoadedModel:
    """Load (once per process) a model by name or path; None = the default model."""
    return _load(resolve(name_or_path))


def save_model(path: Path, codec: Any, prior: Any) -> Path:
    """Write weights + prior tables + config to `path` atomically; returns the path."""
    import torch

    tensors = {k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items() if not k.endswith(TRAINING_ONLY)}
    tensors.update({k: torch.from_numpy(v) for k, v in prior.to_tensors().items()})
    return export_onnx(_write_weights(path, tensors, codec.config.to_dict()), codec)


def export_onnx(path: Path, codec: Any | None = None) -> Path:
    """Write the coding graphs of the model at `path` (`codec`: its torch module, if at hand) as
    `.onnx` files beside it (codec.onnx_export), so the torch-free runtime can run it; returns `path`."""
    from .codec.onnx_export import export_onnx as export

    path = path.resolve()
    export(path, codec if codec is not None else _load(path).codec, digest(path))
    return path


def _write_weights(path: Path, tensors: dict[str, Any], config: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "vqzip-model-1", "config": json.dumps(config)})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    for stale in path.parent.glob(path.name.removesuffix(SUFFIX) + ".*.onnx"):  # graphs of the old weights
        stale.unlink()
    digest.cache_clear()  # the file changed: cached ids and loaded models of this path are stale
    _load.cache_clear()
    return path


def save_context(model_path: Path, config: dict[str, Any], tensors: dict[str, Any]) -> Path:
    """Write a model's context prior beside it, atomically; returns its path."""
    from safetensors.numpy import save_file

    from .coding.priors import CONTEXT_PREFIX

    path = prior_path(model_path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({CONTEXT_PREFIX + k: v for k, v in tensors.items()}, str(tmp),
              metadata={"format": "vqzip-context-prior-1", "config": json.dumps(config)})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    digest.cache_clear()
    _load.cache_clear()
    return path
