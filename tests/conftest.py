"""Shared test fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vqzip.training.data import BIN_DIR, PY_DIR, TARBALLS


def real_data_root() -> Path | None:
    """The real data root, if present: $VQZIP_DATA, else ../shared/data beside the repo (never copied in)."""
    for root in (os.environ.get("VQZIP_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if root and Path(root).is_dir():
            names = (BIN_DIR, PY_DIR, *TARBALLS)
            if any((Path(root) / n).exists() or (Path(root) / "cifar10" / n).exists() for n in names):
                return Path(root)
    return None


@pytest.fixture
def real_data() -> Path:
    """Root holding the real CIFAR-10; skips the test when there is none."""
    root = real_data_root()
    if root is None:
        pytest.skip("real CIFAR-10 not found at $VQZIP_DATA or ../shared/data")
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny randomly initialised RVQ model ('tiny-rvq'), enough to test the codec spine
    without depending on the shipped weights."""
    import torch

    from vqzip.codec.model import Codec, CodecConfig
    from vqzip.coding.priors import StaticPrior
    from vqzip.zoo import save_model

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    codec = Codec(CodecConfig(channels=8, latent_dim=8, quantizer="rvq", quantizer_args={"levels": 3, "codebook_size": 16}))
    x = torch.rand(8, 3, 32, 32) - 0.5
    codec.train()
    codec(x)  # k-means initialises the codebooks on real latents
    codec.eval()
    tokens = codec.encode_tokens(x, 3).numpy()
    save_model(folder / "tiny-rvq.safetensors", codec, StaticPrior.fit(tokens, codec.quantizer.vocab_sizes))
    (folder / "tiny-rvq.json").write_text('{"default_quality": 2}')
    _tiny_context_model(folder)
    return folder


def _tiny_context_model(folder: Path) -> None:
    """'tiny-ctx': another tiny RVQ model (its own id) with a briefly trained context prior."""
    import torch

    from vqzip.codec.model import Codec, CodecConfig
    from vqzip.coding.priors import StaticPrior
    from vqzip.training.prior_training import PriorTrainConfig, train_context
    from vqzip.zoo import save_context, save_model

    torch.manual_seed(1)
    codec = Codec(CodecConfig(channels=8, latent_dim=8, quantizer="rvq", quantizer_args={"levels": 3, "codebook_size": 16}))
    x = torch.rand(32, 3, 32, 32) - 0.5
    codec.train()
    codec(x)
    codec.eval()
    tokens = codec.encode_tokens(x, 3).numpy()
    path = save_model(folder / "tiny-ctx.safetensors", codec, StaticPrior.fit(tokens, codec.quantizer.vocab_sizes))
    cfg = PriorTrainConfig(epochs=1, batch_size=16, dim=8, warmup_steps=1)
    net = train_context(tokens, 16, cfg, folder / "tiny-ctx.prior.ckpt")
    save_context(path, net.cfg.to_dict(), net.to_integer())
    (folder / "tiny-ctx.json").write_text('{"default_quality": 2}')


@pytest.fixture
def tiny_env(tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """VQZIP_MODELS pointing at the tiny model, for in-process and subprocess tests alike."""
    monkeypatch.setenv("VQZIP_MODELS", str(tiny_models))
    return tiny_models
