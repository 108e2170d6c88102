"""Export the first K levels of a trained RVQ checkpoint as a model (how models/photo-rvq-v1 was made).

    python benchmarks/export_rvq_prefix.py models/photo-rvq.ckpt 3 models/photo-rvq-v1 \
        --photos ../shared/data/photos/cbsd68 --crop 64 --crops 12000 --seed 0

Encoder, decoder and the kept codebooks are the checkpoint's, unchanged; the static prior is refitted
on the same training crops (the same seed gives the same crops as `vqzip train`). The existing model
card at OUT.json (or --card) supplies the training fields and is rewritten with an "export" note.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vqzip.codec.model import Codec, CodecConfig
from vqzip.training import data as datasets
from vqzip.training.train import export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("levels", type=int)
    ap.add_argument("out", type=Path)
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--crops", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--card", type=Path, help="model card of the trained run, for its training fields (default: OUT.json)")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = CodecConfig.from_dict(state["codec_config"])
    trained = cfg.quantizer_args["levels"]
    cfg.quantizer_args = {**cfg.quantizer_args, "levels": args.levels}
    codec = Codec(cfg)
    codec.load_state_dict({n: v for n, v in state["model"].items()
                           if not (n.startswith("quantizer.stages.") and int(n.split(".")[2]) >= args.levels)})
    crops = datasets.random_crops(datasets.load_image_folder(args.photos), args.crop, args.crops,
                                  np.random.default_rng(args.seed))
    base = json.loads((args.card or args.out.with_suffix(".json")).read_text())
    card = {k: base[k] for k in ("summary", "data", "test_data", "epochs", "batch_size", "lr", "seed", "limit", "command",
                                 "hardware", "training_notes") if k in base}
    card["export"] = (f"first {args.levels} of the {trained} trained RVQ levels kept (finer levels added under 0.1 dB each on "
                      f"the training photos, checked before any Kodak measurement); prior refitted on the training crops: "
                      f"python benchmarks/export_rvq_prefix.py {args.checkpoint} {args.levels} {args.out} --photos {args.photos} "
                      f"--crop {args.crop} --crops {args.crops} --seed {args.seed}")
    card = export(codec, crops, args.out, card)
    print(card["model_id"], card["qualities"])


if __name__ == "__main__":
    main()
