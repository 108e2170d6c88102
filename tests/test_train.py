"""Training: every quantizer trains a couple of steps, resume continues exactly, export writes a model."""
import json

import numpy as np
import pytest
import torch

from vqzip.codec.model import Codec, CodecConfig
from vqzip.training.train import TrainConfig, export, train

QUANTIZERS = {
    "vq": {"codebook_size": 16},
    "rvq": {"levels": 3, "codebook_size": 16},
    "byte": {"levels": 256},
    "simvq": {"codebook_size": 32},
    "fsq": {"levels": [4, 3, 3]},
    "lfq": {"bits": 4},
}


def images(n=256, seed=0):
    return (np.random.default_rng(seed).random((n, 32, 32, 3)) * 255).astype(np.uint8)


def config(kind="rvq", epochs=1):
    return TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=1, device="cpu", warmup_steps=2,
                       codec=CodecConfig(channels=8, latent_dim=8, quantizer=kind, quantizer_args=QUANTIZERS[kind]))


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_two_steps_on_256_images(kind, tmp_path):
    steps = []
    model = train(images(), config(kind), tmp_path / "m.ckpt", on_step=steps.append)
    assert len(steps) == 2 and all(np.isfinite(s["loss"]) for s in steps)
    assert 0 < steps[-1]["utilisation"] <= 1
    assert (tmp_path / "m.ckpt").is_file() and not model.training


def test_resume_continues_exactly(tmp_path):
    straight = train(images(), config(epochs=2), tmp_path / "a.ckpt")

    class Stop(Exception):
        pass

    def stop_in_second_epoch(s):
        if s["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(images(), config(epochs=2), tmp_path / "b.ckpt", on_step=stop_in_second_epoch)
    assert torch.load(tmp_path / "b.ckpt", weights_only=False)["epoch"] == 1
    resumed = train(images(), config(epochs=2), tmp_path / "b.ckpt", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_export_writes_weights_prior_and_measured_card(tmp_path, monkeypatch):
    model = train(images(), config(), tmp_path / "m.ckpt")
    card = export(model, images(64), tmp_path / "m", {"summary": "test"}, images(8, seed=1))
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved == card and (tmp_path / "m.safetensors").is_file()
    rows = card["results"]["per_quality"]
    assert [r["quality"] for r in rows] == [1, 2, 3]
    assert all(r["bytes"] >= r["ideal_payload_bytes"] for r in rows)
    assert rows[0]["bytes"] < rows[-1]["bytes"]


def test_on_epoch_follows_each_checkpoint(tmp_path):
    """on_epoch(epoch, model) runs once per epoch, after that epoch's checkpoint is on disk."""
    ckpt, seen = tmp_path / "m.ckpt", []

    def on_epoch(epoch, model):
        seen.append((epoch, torch.load(ckpt, weights_only=False)["epoch"], model.training))

    train(images(), config(epochs=2), ckpt, on_epoch=on_epoch)
    assert seen == [(1, 1, True), (2, 2, True)]


@pytest.mark.parametrize("kind, args", [
    ("rvq", {"levels": 3, "codebook_size": 16}),  # EMA codebooks, quantizer dropout, k-means init, restarts
    ("rvq", {"levels": 3, "codebook_size": 16, "ema": False}),  # codebooks learnt by loss: dropped levels get no gradient
    ("simvq", {"codebook_size": 32}),
])
def test_distributed_ranks_stay_identical(kind, args, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU): DDP averages gradients and the VQ code reduces its
    codebook statistics across ranks, so after training every rank holds exactly the same model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(worker), str(tmp_path), kind, json.dumps(args)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    torch.manual_seed(1)  # the worker's seed: the weights every rank starts from
    initial = Codec(CodecConfig(channels=8, latent_dim=8, quantizer=kind, quantizer_args=args)).state_dict()
    for name, a in ranks[0].items():
        assert torch.equal(a, ranks[1][name]), name
    assert any(not torch.equal(a, initial[name]) for name, a in ranks[0].items() if "codebook" in name or "proj" in name)
    assert torch.load(tmp_path / "m.ckpt", weights_only=False)["epoch"] == 2


def test_init_starts_from_a_model_and_may_add_rvq_levels(tmp_path):
    """--init copies a trained model's weights; an RVQ model may grow levels, which start fresh."""
    from dataclasses import replace

    from vqzip.training.train import warm_start

    trained = train(images(), config(), tmp_path / "m.ckpt")
    export(trained, images(64), tmp_path / "m", {"summary": "test"})
    grown = Codec(replace(config().codec, quantizer_args={"levels": 5, "codebook_size": 16}))
    warm_start(grown, str(tmp_path / "m.safetensors"))
    for name, value in trained.state_dict().items():
        if not name.endswith(("ema_sum", "ema_count", "idle_steps")):
            assert torch.equal(grown.state_dict()[name], value), name
    old, new = grown.quantizer.stages[2], grown.quantizer.stages[3]
    assert torch.equal(old.ema_sum, old.codebook) and bool(old.initialised)
    assert not bool(new.initialised)  # k-means on its first batch, as in a fresh run
    steps = []
    train(images(), replace(config(), init=str(tmp_path / "m.safetensors")), tmp_path / "g.ckpt", on_step=steps.append)
    assert steps and np.isfinite(steps[-1]["loss"])


def test_init_refuses_another_architecture(tmp_path):
    from dataclasses import replace

    from vqzip.training.train import warm_start

    export(train(images(), config(), tmp_path / "m.ckpt"), images(64), tmp_path / "m", {"summary": "test"})
    with pytest.raises(RuntimeError, match="differs"):
        warm_start(Codec(replace(config().codec, channels=12)), str(tmp_path / "m.safetensors"))
    with pytest.raises(RuntimeError, match="differs"):  # fewer RVQ levels would drop trained ones
        warm_start(Codec(replace(config().codec, quantizer_args={"levels": 2, "codebook_size": 16})),
                   str(tmp_path / "m.safetensors"))
