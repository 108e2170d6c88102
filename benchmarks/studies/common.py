"""Shared machinery of the quantizer studies: flags, data, one resumable training run, evaluation, plots.

Every run trains with the project's own `vqzip.training.train.train` (what `vqzip train` calls). Layout of an
output folder:

    <out>/runs/<name>.json            one finished run (config, budget, final metrics, curves): skipped next time
    <out>/checkpoints/<name>.ckpt     the run in progress (train(..., resume=True) continues it exactly)
    <out>/checkpoints/<name>.curve.json  its per-epoch test metrics so far
    <out>/results.json, <out>/*.png   the study: rewritten from the finished runs at the end of each invocation

A finished run whose config or budget differs from the current invocation's is an error (never mixed into
a comparison): use another --out, or delete that run's JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from vqzip.codec.model import Codec, CodecConfig, to_unit  # noqa: E402
from vqzip.training.data import load_cifar10  # noqa: E402
from vqzip.training.train import TrainConfig, pick_device, psnr_from_mse, train  # noqa: E402

MAX_COUNTED_VOCAB = 2 ** 20  # code-usage histograms only for alphabets up to this size (not the identity's 2**32)


# ---------------------------------------------------------------- flags, budget, data

def parser(description: str, study: str, epochs: int, lr: float, batch_size: int = 128) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs of every run (the budget)")
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on the first N CIFAR-10 training images (default: all 50,000)")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="Adam peak learning rate (warm-up, then cosine decay: vqzip's schedule)")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="linear warm-up steps (default: 200, vqzip's default, or a tenth of all steps if fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--data", default=os.environ.get("VQZIP_DATA") or str(REPO.parent / "shared" / "data"),
                   help="folder holding CIFAR-10 (see vqzip.training.data)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "studies" / study)
    p.add_argument("--quick", action="store_true", help="a handful of configs instead of the issue's full grid")
    p.add_argument("--only", action="append", default=[], help="run only configs whose name contains this (repeatable)")
    p.add_argument("--list", action="store_true", help="print the planned runs and exit")
    p.add_argument("--plots-only", action="store_true", help="train nothing: rebuild results.json and plots from finished runs")
    p.add_argument("--eval-batch", type=int, default=100, help="test images per evaluation batch")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoint after it finished")
    return p


def budget_of(args: argparse.Namespace, n_train: int, n_test: int) -> dict[str, Any]:
    """What must be equal within a comparison (the device is recorded per run, not part of it)."""
    total_steps = max(1, n_train // args.batch_size) * args.epochs
    warmup = args.warmup_steps if args.warmup_steps is not None else min(200, max(1, total_steps // 10))
    return {"epochs": args.epochs, "train_images": n_train, "test_images": n_test, "batch_size": args.batch_size,
            "lr": args.lr, "warmup_steps": warmup, "total_steps": total_steps, "seed": args.seed, "optimizer": "Adam",
            "schedule": "linear warm-up, cosine decay to 5% (vqzip.training.train.lr_at)", "augmentation": "random h-flip",
            "data": "CIFAR-10 train (first train_images) / test (first test_images)"}


def device_name(device: str) -> str:
    dev = pick_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def budget_label(budget: dict[str, Any], devices: list[str]) -> str:
    return (f"budget: {budget['epochs']} epoch{'s' * (budget['epochs'] != 1)} on {budget['train_images']:,} images, "
            f"batch {budget['batch_size']}, lr {budget['lr']:g}; test {budget['test_images']:,}; "
            f"{', '.join(sorted(set(devices))) or '?'}")


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    train_x, _ = load_cifar10("train", args.data)
    test_x, _ = load_cifar10("test", args.data)
    if args.train_limit:
        train_x = train_x[: args.train_limit]
    if args.test_limit:
        test_x = test_x[: args.test_limit]
    return np.ascontiguousarray(train_x), np.ascontiguousarray(test_x)


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: Codec, images: np.ndarray, device: torch.device, levels: list[int | None] | None = None,
             batch: int = 100) -> dict[str, Any]:
    """Test metrics of `model` at each token-level count in `levels` (None: all levels).

    MSE is over [0, 1]-scaled RGB (i.e. on the codec's [-0.5, 0.5] scale), reconstruction clamped to the
    range but not rounded; PSNR = 10 log10(1 / MSE) of the set's mean MSE. Code usage is counted over the
    whole evaluated set at full levels: utilisation = share of each level's codes used at least once,
    perplexity = exp(entropy) of its code histogram.
    """
    was_training = model.training
    model.eval()
    levels = levels or [None]
    sq = {lv: 0.0 for lv in levels}
    vocab = model.quantizer.vocab_sizes
    counts = [torch.zeros(v, dtype=torch.long) if v <= MAX_COUNTED_VOCAB else None for v in vocab]
    n = 0
    for start in range(0, len(images), batch):
        x = to_unit(torch.from_numpy(images[start: start + batch]).to(device))
        z = model.encoder(x)
        out = model.quantizer(z, levels[-1])  # usage at the most levels evaluated (levels are ascending)
        for i, c in enumerate(counts):
            if c is not None and i < out.tokens.shape[1]:
                c += torch.bincount(out.tokens[:, i].flatten().cpu(), minlength=vocab[i])
        for lv in levels:
            if lv is None or not model.quantizer.progressive:
                z_q = out.z_q
            else:  # a prefix of a progressive code: its tokens do not depend on the levels after it
                z_q = model.quantizer.dequantize(out.tokens[:, :lv])
            recon = model.decoder(z_q).clamp(-0.5, 0.5)
            sq[lv] += (recon - x).pow(2).mean((1, 2, 3)).sum().item()
        n += len(x)
    model.train(was_training)
    rows = []
    for lv in levels:
        mse = sq[lv] / n
        rows.append({"levels": lv if lv is not None else model.quantizer.num_levels, "mse": mse, "psnr": psnr_from_mse(mse)})
    usage = []
    for c in counts:
        if c is None:
            usage.append(None)
            continue
        p = c.double() / c.sum().clamp_min(1)
        ent = -(p[p > 0] * p[p > 0].log()).sum().item()
        usage.append({"utilisation": (c > 0).double().mean().item(), "used": int((c > 0).sum()),
                      "perplexity": math.exp(ent), "entropy_bits": ent / math.log(2)})
    full = rows[-1]
    return {"mse": full["mse"], "psnr": full["psnr"], "per_levels": rows, "usage": usage}


# ---------------------------------------------------------------- one resumable run

@dataclass
class RunSpec:
    name: str
    codec: CodecConfig
    meta: dict[str, Any] = field(default_factory=dict)  # study-specific labels (family, d, k, ...)
    eval_levels: list[int] | None = None  # progressive models: evaluate these prefixes at the end


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def _identity(spec: RunSpec, budget: dict[str, Any]) -> dict[str, Any]:
    return {"codec": spec.codec.to_dict(), "budget": budget, "eval_levels": spec.eval_levels}


def finished(out: Path, spec: RunSpec, budget: dict[str, Any]) -> dict[str, Any] | None:
    path = out / "runs" / f"{spec.name}.json"
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    current = json.loads(json.dumps(_identity(spec, budget), default=_json_default))
    if done["identity"] != current:
        diff = {f"{part}.{k}": (done["identity"][part].get(k), v) for part in ("codec", "budget")
                for k, v in current[part].items() if done["identity"][part].get(k) != v}
        if done["identity"]["eval_levels"] != current["eval_levels"]:
            diff["eval_levels"] = (done["identity"]["eval_levels"], current["eval_levels"])
        raise SystemExit(f"{path} was made with another config or budget than this invocation's "
                         f"(saved vs now: {diff}); budgets must not be mixed within a comparison: "
                         "use another --out, or delete that file to redo the run")
    return done


def run(spec: RunSpec, args: argparse.Namespace, budget: dict[str, Any], train_x: np.ndarray,
        test_x: np.ndarray) -> dict[str, Any]:
    """Train one config (or resume it, or skip it when finished) and return its result dict."""
    out: Path = args.out
    done = finished(out, spec, budget)
    if done is not None:
        print(f"[skip] {spec.name}: finished earlier (test PSNR {done['final']['psnr']:.2f} dB)", flush=True)
        return done
    device = pick_device(args.device)
    dev_name = device_name(args.device)
    ckpt = out / "checkpoints" / f"{spec.name}.ckpt"
    curve_path = ckpt.with_suffix(".curve.json")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                      limit=None, warmup_steps=budget["warmup_steps"], codec=spec.codec)
    curves: dict[str, list] = {"epochs": [], "steps": []}
    start_epoch, spent = 0, 0.0
    if ckpt.exists():
        start_epoch = int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"])
        if curve_path.exists():
            saved = json.loads(curve_path.read_text())
            curves = {k: [r for r in saved["curves"][k] if r["epoch"] <= start_epoch] for k in ("epochs", "steps")}
            spent = saved.get("train_seconds", 0.0)
        print(f"[resume] {spec.name}: from epoch {start_epoch}/{args.epochs}", flush=True)
    else:
        print(f"[train] {spec.name}: {args.epochs} epochs on {len(train_x):,} images, {dev_name}", flush=True)

    steps_per_epoch = max(1, len(train_x) // args.batch_size)
    log_every = max(1, steps_per_epoch * args.epochs // 200)  # about 200 points of training trace per run
    window: dict[str, list[float]] = {"loss": [], "mse": [], "util": []}
    epoch_acc: dict[str, list[float]] = {"loss": [], "mse": [], "util": []}
    t_start = time.perf_counter()
    last_print = [0.0]

    def on_step(s: dict[str, Any]) -> None:
        mse = 10 ** (-s["psnr"] / 10)
        for acc in (window, epoch_acc):
            acc["loss"].append(s["loss"])
            acc["mse"].append(mse)
            acc["util"].append(s["utilisation"])
        global_step = (s["epoch"] - 1) * s["steps"] + s["step"]
        if global_step % log_every == 0 or s["step"] == s["steps"]:
            m = float(np.mean(window["mse"]))
            curves["steps"].append({"epoch": s["epoch"], "step": global_step, "loss": float(np.mean(window["loss"])),
                                    "train_mse": m, "train_psnr": psnr_from_mse(m),
                                    "batch_utilisation": float(np.mean(window["util"]))})
            for v in window.values():
                v.clear()
        now = time.perf_counter()
        if now - last_print[0] > 30:
            last_print[0] = now
            print(f"  {spec.name} epoch {s['epoch']}/{s['epochs']} step {s['step']}/{s['steps']} "
                  f"loss {s['loss']:.4f} psnr {s['psnr']:.2f} {s['images_per_s']:.0f} img/s", flush=True)

    def on_epoch(epoch: int, model: Codec) -> None:
        ev = evaluate(model, test_x, device, batch=args.eval_batch)
        tm = float(np.mean(epoch_acc["mse"])) if epoch_acc["mse"] else float("nan")
        row = {"epoch": epoch, "train_loss": float(np.mean(epoch_acc["loss"])) if epoch_acc["loss"] else None,
               "train_mse": tm, "train_psnr": psnr_from_mse(tm) if epoch_acc["mse"] else None,
               "train_batch_utilisation": float(np.mean(epoch_acc["util"])) if epoch_acc["util"] else None,
               "test_mse": ev["mse"], "test_psnr": ev["psnr"], "test_usage": ev["usage"],
               "seconds": spent + time.perf_counter() - t_start}
        for v in epoch_acc.values():
            v.clear()
        curves["epochs"].append(row)
        _write_json(curve_path, {"curves": curves, "train_seconds": row["seconds"]})
        u = ev["usage"][0]
        print(f"  {spec.name} epoch {epoch}: test PSNR {ev['psnr']:.2f} dB"
              + (f", utilisation {u['utilisation']:.3f}" if u else ""), flush=True)

    if ckpt.exists() and (not curves["epochs"] or curves["epochs"][-1]["epoch"] < start_epoch):
        # interrupted between a checkpoint and its evaluation: evaluate that checkpoint now
        state = torch.load(ckpt, map_location=device, weights_only=False)
        m = Codec(spec.codec).to(device)
        m.load_state_dict(state["model"])
        on_epoch(start_epoch, m)
    model = train(train_x, cfg, ckpt, resume=True, on_step=on_step, on_epoch=on_epoch)
    train_seconds = spent + time.perf_counter() - t_start
    t_eval = time.perf_counter()
    final = evaluate(model.to(device), test_x, device, levels=spec.eval_levels, batch=args.eval_batch)
    result = {"name": spec.name, "meta": spec.meta, "identity": _identity(spec, budget),
              "device": dev_name, "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - t_eval,
              "parameters": sum(p.numel() for p in model.parameters()),
              "vocab_sizes": model.quantizer.vocab_sizes,
              "final": final, "curves": curves}
    _write_json(out / "runs" / f"{spec.name}.json", result)
    if not args.keep_checkpoints:
        ckpt.unlink(missing_ok=True)
        curve_path.unlink(missing_ok=True)
    print(f"[done] {spec.name}: test PSNR {final['psnr']:.2f} dB, MSE {final['mse']:.3e} "
          f"({train_seconds:.0f} s training)", flush=True)
    return result


def run_all(specs: list[RunSpec], args: argparse.Namespace, description: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Select, list, train (or skip) the runs; return the finished results and the budget."""
    if args.only:
        specs = [s for s in specs if any(o in s.name for o in args.only)]
    names = [s.name for s in specs]
    assert len(names) == len(set(names)), "duplicate run names"
    if args.list:
        for s in specs:
            print(s.name, json.dumps(s.codec.quantizer_args), f"d={s.codec.latent_dim} down={s.codec.downsamples}")
        print(f"{len(specs)} runs")
        raise SystemExit(0)
    train_x, test_x = load_data(args)
    budget = budget_of(args, len(train_x), len(test_x))
    print(f"{description}: {len(specs)} runs -> {args.out}", flush=True)
    results = []
    for i, spec in enumerate(specs, 1):
        print(f"({i}/{len(specs)})", end=" ", flush=True)
        if args.plots_only:
            r = finished(args.out, spec, budget)
            if r is None:
                print(f"[missing] {spec.name}", flush=True)
                continue
            print(f"[have] {spec.name}", flush=True)
        else:
            r = run(spec, args, budget, train_x, test_x)
        results.append(r)
    return results, budget


def write_results(args: argparse.Namespace, study: str, claim: str, budget: dict[str, Any], grid: dict[str, Any],
                  results: list[dict[str, Any]], analysis: dict[str, Any], plots: list[str], notes: list[str]) -> Path:
    path = args.out / "results.json"
    _write_json(path, {"study": study, "claim": claim, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                       "written": time.strftime("%Y-%m-%d %H:%M:%S"), "budget": budget,
                       "budget_label": budget_label(budget, [r["device"] for r in results]),
                       "grid": grid, "runs_finished": len(results), "analysis": analysis, "plots": plots,
                       "notes": notes, "runs": results})
    print(f"wrote {path} and {len(plots)} plot(s)", flush=True)
    return path


# ---------------------------------------------------------------- plotting

def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, title: str, budget: dict[str, Any], results: list[dict[str, Any]]) -> str:
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.005, budget_label(budget, [r["device"] for r in results]), ha="center", va="bottom", fontsize=8,
             color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def bits_per_image(codec: CodecConfig, vocab_sizes: list[int], image_side: int = 32) -> float:
    """Total bits per image: latent positions x sum of log2 k over the levels used."""
    side = image_side // 2 ** codec.downsamples
    return side * side * sum(math.log2(k) for k in vocab_sizes)


def power_law_fit(bits: list[float], mse: list[float]) -> dict[str, Any] | None:
    """Least squares of log MSE = log a - b log bits: MSE = a * bits^(-b); R^2 and RMS error in log10 space."""
    if len(bits) < 2:
        return None
    x, y = np.log(np.asarray(bits, float)), np.log(np.asarray(mse, float))
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {"a": float(math.exp(intercept)), "b": float(-slope), "points": len(bits),
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else None,
            "rms_log10_residual": float(np.sqrt(((y - pred) ** 2).mean()) / math.log(10)),
            "bits_range": [float(min(bits)), float(max(bits))]}

