"""How close each quality comes to the model's own autoencoder (no quantization at all).

    python benchmarks/autoencoder_ceiling.py photo-rvq ../shared/data/kodak
    python benchmarks/autoencoder_ceiling.py small-hp cifar10 [--limit 1000]   # the first test images

When the top RVQ levels add little PSNR, this tells why: if the unquantized autoencoder is barely
better than the top quality, the ceiling is the encoder/decoder (more training or width), not the
codebooks. PSNR per image on RGB uint8 (as `vqzip bench`), mean over the images; images are cropped
to a multiple of the model's stride (Kodak needs no crop). For a photo codec (rate-distortion, gain
vectors per quality) each quality has its own ceiling: the synthesis of the gained latent unrounded,
beside the same latent rounded (the tokens as coded; float networks). Writes benchmarks/results/<data>-<model>-
autoencoder_ceiling.json unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqzip.bench import psnr
from vqzip.codec.model import to_uint8, to_unit
from vqzip.zoo import load_model


def photo_outputs(codec: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per quality of a photo codec: its synthesis of the gained latent as it is and rounded."""
    out = {}
    for q in range(codec.qualities):
        qq = torch.tensor([q])
        y = codec.analysis(x, qq)
        out[f"quality {q + 1} unquantized"] = codec.synthesis(y, qq)
        out[f"quality {q + 1}"] = codec.synthesis(y.round(), qq)
    return out


def images(source: str, limit: int) -> list[np.ndarray]:
    """RGB uint8 arrays: the first `limit` CIFAR-10 test images for 'cifar10', else a folder's images."""
    if source == "cifar10":
        from vqzip.training.data import load_cifar10

        return list(load_cifar10("test", None)[0][:limit])
    files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]


def ceiling(model_name: str, source: str, limit: int) -> dict:
    model = load_model(model_name)
    codec, stride = model.codec, model.codec.stride
    rows: dict[str, list[float]] = {}
    pictures = images(source, limit)
    if not pictures:
        raise SystemExit(f"no images in {source}")
    for rgb in pictures:
        rgb = np.array(rgb[: rgb.shape[0] // stride * stride, : rgb.shape[1] // stride * stride])
        x = to_unit(torch.from_numpy(rgb)[None])
        with torch.no_grad():
            outputs = photo_outputs(codec, x) if model.is_hyperprior else {"unquantized": codec.decoder(codec.encoder(x))}
            for q in range(1, codec.qualities + 1) if not model.is_hyperprior else []:
                outputs[f"quality {q}"] = codec.decode_tokens(codec.encode_tokens(x, q))
        for key, y in outputs.items():
            rows.setdefault(key, []).append(float(psnr(rgb, to_uint8(y)[0].numpy())))
    return {"model": model.name, "model_id": f"{model.model_id:04x}", "images": source, "n_images": len(pictures),
            "psnr_db": {key: round(float(np.mean(v)), 3) for key, v in rows.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("images", help="folder of test images, or cifar10 (the first --limit test images)")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = ceiling(args.model, args.images, args.limit)
    out = args.out or Path(__file__).parent / "results" / f"{Path(args.images).name}-{result['model']}-autoencoder_ceiling.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result["psnr_db"].items():
        print(f"{key:>12}: {value:.2f} dB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
