"""Run under `torchrun --nproc_per_node 2`: train a tiny codec with DistributedDataParallel (gloo, CPU)
and save this rank's final weights and buffers, so a test can check every rank ends identical."""
import sys
from pathlib import Path

import numpy as np
import torch

from vqzip.codec.model import CodecConfig
from vqzip.training.train import TrainConfig, train


def main(out: Path, quantizer: str, args: str) -> None:
    import json
    import os

    images = (np.random.default_rng(0).random((256, 32, 32, 3)) * 255).astype(np.uint8)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, seed=1, device="cpu", warmup_steps=2,
                      codec=CodecConfig(channels=8, latent_dim=8, quantizer=quantizer, quantizer_args=json.loads(args)))
    model = train(images, cfg, out / "m.ckpt")
    torch.save(model.state_dict(), out / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
