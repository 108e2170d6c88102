"""Commands that make models: `train` (a codec) and `train-prior` (its learned context prior)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import VqzipError
from . import options as opt
from .console import err, fail, one_line

if TYPE_CHECKING:
    import numpy as np


def _need_torch(command: str) -> None:
    """Training needs torch, which `pip install .` leaves out: say so in one line."""
    from ..runtime import requires_torch

    try:
        requires_torch(command)
    except VqzipError as exc:
        fail(str(exc))


def _quantizer_args(kind: str, codebook_size: int, levels: int, fsq_levels: str, lfq_bits: int) -> dict[str, Any]:
    """The CLI's few shape options, mapped onto each quantizer's own constructor arguments."""
    if kind == "rvq":
        return {"levels": levels, "codebook_size": codebook_size}
    if kind in ("vq", "simvq"):
        return {"codebook_size": codebook_size}
    if kind == "byte":
        return {"levels": codebook_size}
    if kind == "fsq":
        return {"levels": [int(v) for v in fsq_levels.split(",")]}
    if kind == "lfq":
        return {"bits": lfq_bits}
    fail(f"unknown quantizer {kind!r}; choose rvq, vq, byte, simvq, fsq or lfq", 2)


def train(
    datasets: Annotated[list[str], typer.Argument(help="'cifar10', or folders of photos (trained on random crops; "
                                                       "several with --arch hyperprior).", show_default=False)],
    out: Annotated[Path, opt.out("Output stem: writes OUT.safetensors, OUT.json (and OUT.ckpt while training).")],
    quantizer: Annotated[str, typer.Option("--quantizer", help="rvq, vq, byte, simvq, fsq or lfq.")] = "rvq",
    epochs: opt.Epochs = 10,
    batch_size: opt.BatchSize = 128,
    lr: opt.Lr = 2e-3,
    data: opt.TrainData = None,
    limit: opt.TrainLimit = None,
    device: opt.Device = "auto",
    threads: opt.Threads = None,
    resume: Annotated[bool, opt.resume("Continue from OUT.ckpt.")] = False,
    init: Annotated[str | None, typer.Option("--init", help="Start from this model's weights (name or path; same "
                                                            "architecture) to train it further.")] = None,
    seed: opt.Seed = 0,
    channels: Annotated[int, typer.Option("--channels", help="Network width.")] = 48,
    latent_dim: Annotated[int, typer.Option("--latent-dim")] = 64,
    downsamples: Annotated[int | None, typer.Option("--downsamples", help="Latent grid = image / 2**downsamples "
                                                    "(default 2; --arch hyperprior: 4).", show_default=False)] = None,
    codebook_size: Annotated[int, typer.Option("--codebook-size", help="Codebook size (vq, rvq, simvq) or K (byte).")] = 256,
    levels: Annotated[int, typer.Option("--levels", help="RVQ levels (= quality levels).")] = 10,
    fsq_levels: Annotated[str, typer.Option("--fsq-levels")] = "8,5,5,5",
    lfq_bits: Annotated[int, typer.Option("--lfq-bits")] = 10,
    crop: opt.Crop = 64,
    crops: Annotated[int, opt.crops("Random crops for photo folders (drawn once from --seed; flipped at random "
                                    "every epoch).")] = 20000,
    evaluate: Annotated[bool, opt.evaluate("Measure test-set bytes and PSNR into the model card.")] = True,
    arch: Annotated[str, typer.Option("--arch", help="tokens: a token codec (--quantizer); hyperprior: a "
                                                     "rate-distortion photo codec (options below).")] = "tokens",
    steps: Annotated[int, typer.Option("--steps", min=1, help="hyperprior: train until this step.")] = 100_000,
    latent: Annotated[int, typer.Option("--latent", help="hyperprior: latent channels (tokens per position).")] = 160,
    hyper: Annotated[int, typer.Option("--hyper", help="hyperprior: channels of the side latent.")] = 96,
    run: Annotated[Path | None, typer.Option("--run", help="hyperprior: checkpoint folder, resumed when it holds "
                                                           "one (default: ~/.cache/vqzip/runs/<OUT's name>).")] = None,
    test: Annotated[Path | None, typer.Option("--test", help="hyperprior: folder of test photos measured into "
                                                             "the model card (e.g. Kodak), or 'cifar10' (the "
                                                             "first 1,000 test images).")] = None,
    thumbnails: Annotated[str | None, typer.Option("--thumbnails", help="hyperprior: train on thumbnails of the "
                                                   "photo folders instead (sides, e.g. 32,64: --crops random "
                                                   "crops of each, box-downsampled).")] = None,
    lambdas: Annotated[str | None, typer.Option("--lambdas", help="hyperprior: lambda of each quality, comma-"
                                                "separated (default: the photo codec's eight).")] = None,
    slices: Annotated[int, typer.Option("--slices", min=1, help="hyperprior: code the latent in this many channel "
                                        "groups, each conditioned on those before (1: hyperprior alone).")] = 1,
    context: Annotated[int, typer.Option("--context", min=1, help="hyperprior: hidden channels of each slice's "
                                         "context network.")] = 96,
    checkerboard: Annotated[bool, typer.Option("--checkerboard", help="hyperprior: code each slice in two "
                                               "checkerboard halves, the second's tables also from the first's "
                                               "tokens (format version 5).")] = False,
    residual: Annotated[int, typer.Option("--residual", min=0, help="hyperprior: residual blocks after each "
                                          "of the transforms' two middle layers (deeper transforms; new "
                                          "ones start as the identity).")] = 0,
    latent_ramp: Annotated[int, typer.Option("--latent-ramp", min=0, help="hyperprior, with --init and a larger "
                                             "--latent: the new channels' bits enter the loss ramped from 0 to "
                                             "full over this many steps, so they learn to carry something "
                                             "before they pay for it.")] = 0,
    prior_block: Annotated[int, typer.Option("--prior-block", min=0, help="hyperprior: code with the entropy "
                                             "model run block by block, each of this many token positions a side "
                                             "as if an image of its own (format version 6); it must be what a crop "
                                             "is (--crop / the latent stride), so that images larger than a crop "
                                             "are coded as training saw them. 0: the whole grid.")] = 0,
    compile_steps: Annotated[bool, typer.Option("--compile", help="hyperprior: compile the training pass "
                                                "(torch.compile; needs a C++ compiler): about 15 % faster steps "
                                                "after a minute or two of compiling.")] = False,
    mean_shift: Annotated[bool, typer.Option("--mean-shift", help="hyperprior: train the synthesis and contexts "
                                             "on round(y - mean) + mean, what format version 9 codes, instead "
                                             "of round(y).")] = False,
) -> None:
    """Train a codec and write OUT.safetensors + OUT.json (weights, prior tables, model card).

    --arch hyperprior trains a photo codec on rate + lambda * MSE for --steps steps (crops of --crop
    pixels, --batch-size per step; its defaults there are 8 x 256 and --lr 3e-4, --channels 96),
    checkpointing every 5 minutes and on Ctrl-C to --run, from which the same command resumes."""
    _need_torch("vqzip train")
    if arch == "hyperprior":
        _train_hyperprior(datasets, out, run, steps, batch_size, lr, crop, seed, init, test if evaluate else None,
                          _photo_config(channels, latent, hyper, downsamples, lambdas, slices, context, checkerboard,
                                        residual, prior_block), thumbnails,
                          crops, data, compile_steps, latent_ramp, mean_shift)
        return
    if arch != "tokens":
        fail(f"unknown --arch {arch!r}; choose tokens or hyperprior", 2)
    if len(datasets) != 1:
        fail("--arch tokens trains on one data set", 2)
    dataset = datasets[0]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..codec.model import CodecConfig
    from ..training.train import TrainConfig, check_init, export
    from ..training.train import train as run_training

    qargs = _quantizer_args(quantizer, codebook_size, levels, fsq_levels, lfq_bits)
    train_images, test_images, source, test_source = _training_images(dataset, data, crop, crops, seed)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, limit=limit, init=init,
                      codec=CodecConfig(channels=channels, downsamples=2 if downsamples is None else downsamples,
                                        latent_dim=latent_dim,
                                        quantizer=quantizer, quantizer_args=qargs))
    if init:  # a bad --init fails here, before any progress output
        try:
            check_init(init, cfg.codec)
        except (RuntimeError, VqzipError) as exc:
            fail(str(exc))
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.4f} PSNR {task.fields[psnr]:.2f} dB "
                          "util {task.fields[util]:.2f} {task.fields[ips]:.0f} img/s"), TimeElapsedColumn()]
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone reports and exports
    with Progress(*columns, console=err, disable=rank != 0) as bar:
        task = bar.add_task("train", total=1, epoch=0, epochs=epochs, loss=0.0, psnr=0.0, util=0.0, ips=0.0)

        def on_step(s: dict[str, Any]) -> None:
            bar.update(task, completed=s["step"], total=s["steps"], epoch=s["epoch"], loss=s["loss"], psnr=s["psnr"],
                       util=s["utilisation"], ips=s["images_per_s"])
            if s["step"] == s["steps"] and not err.is_terminal:  # logs get one line per epoch
                err.print(f"epoch {s['epoch']}/{s['epochs']}: loss {s['loss']:.4f} PSNR {s['psnr']:.2f} dB "
                          f"util {s['utilisation']:.2f} {s['images_per_s']:.0f} img/s")

        try:
            model = run_training(train_images, cfg, out.with_suffix(".ckpt"), resume=resume, on_step=on_step)
        except (RuntimeError, VqzipError) as exc:
            fail(str(exc))
    if rank != 0:
        return
    card: dict[str, Any] = {"summary": f"{quantizer} on {source}", "data": source, "test_data": test_source,
                            "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "limit": limit,
                            "command": "vqzip " + " ".join(sys.argv[1:])}
    if init:  # the chain that made this model: what it started from, and how that was made
        from ..zoo import load_model

        start = load_model(init)
        card["init"] = {"model": init, "model_id": f"{start.model_id:04x}", "command": start.card.get("command")}
    err.print("fitting the prior on the training set...")
    measured = test_images if evaluate else None
    with Progress(TextColumn("measuring real .vqz files, every quality"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("measure", total=model.qualities * len(measured) if measured is not None else 0)
        card = export(model, train_images[:limit] if limit else train_images, out, card, measured,
                      on_batch=lambda n: bar.advance(task, n))
    err.print(f"wrote {out.with_suffix('.safetensors')} and {out.with_suffix('.json')} (model id {card['model_id']})")


RD_DEFAULTS = {"batch_size": (128, 8), "lr": (2e-3, 3e-4), "crop": (64, 256), "channels": (48, 96)}
CIFAR_TEST_IMAGES = 1000  # --test cifar10 measures the card on this many test images


def _rd_default(name: str, value: float) -> float:
    tokens_default, photo_default = RD_DEFAULTS[name]
    return photo_default if value == tokens_default else value


def _photo_config(channels: int, latent: int, hyper: int, downsamples: int | None, lambdas: str | None,
                  slices: int = 1, context: int = 96, checkerboard: bool = False, residual: int = 0,
                  prior_block: int = 0) -> Any:
    """The PhotoConfig of `vqzip train --arch hyperprior`'s options; token-codec defaults become its own."""
    from ..codec.config import LAMBDAS, PhotoConfig

    try:
        lams = tuple(float(v) for v in lambdas.split(",")) if lambdas else LAMBDAS
    except ValueError:
        fail(f"--lambdas {lambdas!r}: expected numbers separated by commas", 2)
    if not lams or any(not 0 < v < 10 for v in lams):
        fail(f"--lambdas {lambdas!r}: each lambda must lie in (0, 10)", 2)
    if list(lams) != sorted(set(lams)):
        fail(f"--lambdas {lambdas!r}: give them in increasing order (quality 1 is the lowest)", 2)
    ds = 4 if downsamples is None else downsamples
    if not 1 <= ds <= 4:
        fail(f"--downsamples {ds}: the photo codec has 1 to 4", 2)
    try:
        return PhotoConfig(channels=int(_rd_default("channels", channels)), latent=latent, hyper=hyper, lambdas=lams,
                           downsamples=ds, slices=slices, context=context, checkerboard=checkerboard,
                           residual=residual, prior_block=prior_block)
    except ValueError as exc:
        fail(one_line(exc), 2)


def _rd_images(datasets: list[str], data: Path | None, crop: int, thumbnails: str | None, count: int,
               seed: int) -> tuple[list[np.ndarray], str]:
    """The images a photo codec trains on, and their description: photo folders (or, with
    --thumbnails, thumbnails made of them) and 'cifar10' (its 50,000 training images)."""
    from ..training import data as cifar
    from ..training.rd import load_photos
    from ..training.rd import thumbnails as make_thumbnails

    try:
        sides = [int(v) for v in thumbnails.split(",")] if thumbnails else []
    except ValueError:
        raise ValueError(f"--thumbnails {thumbnails!r}: expected sides in pixels separated by commas") from None
    if any(v < 1 for v in sides):
        raise ValueError(f"--thumbnails {thumbnails!r}: sides must be positive")
    images: list[np.ndarray] = []
    parts = []
    folders = [Path(d) for d in datasets if d != "cifar10"]
    if "cifar10" in datasets:
        train, _ = cifar.load_cifar10("train", data, download=True)
        images += list(train)
        parts.append(f"CIFAR-10 train ({len(train):,} images)")
    if folders and sides:
        photos = load_photos(folders, 2 * min(sides))
        for side in sides:
            images += make_thumbnails(photos, side, count, seed)
        parts.append(f"{count:,} thumbnails each of {' and '.join(f'{v}x{v}' for v in sides)} (random square crops "
                     f"box-downsampled 2x or more) of {', '.join(map(str, folders))} ({len(photos)} photos)")
    elif folders:
        photos = load_photos(folders, crop)
        images += photos
        parts.append(f"{', '.join(map(str, folders))} ({len(photos)} photos)")
    small = [im.shape for im in images if min(im.shape[:2]) < crop]
    if small:
        raise ValueError(f"--crop {crop} is larger than some training images ({small[0][1]}x{small[0][0]})")
    return images, f"random {crop}x{crop} crops of " + " + ".join(parts)


def _rd_test_images(test: Path | None, data: Path | None) -> tuple[list[np.ndarray] | None, str | None]:
    from ..training import data as cifar
    from ..training.rd import load_photos

    if test is None:
        return None, None
    if str(test) == "cifar10" and not test.is_dir():
        images, _ = cifar.load_cifar10("test", data, download=True)
        return list(images[:CIFAR_TEST_IMAGES]), f"CIFAR-10 test, first {CIFAR_TEST_IMAGES:,} images"
    return load_photos([test], 1), str(test)


def _train_hyperprior(datasets: list[str], out: Path, run: Path | None, steps: int, batch_size: int, lr: float,
                      crop: int, seed: int, init: str | None, test: Path | None, config: Any,
                      thumbnails: str | None, crops: int, data: Path | None, compile_steps: bool = False,
                      latent_ramp: int = 0, mean_shift: bool = False) -> None:
    """`vqzip train --arch hyperprior`: the rate-distortion photo codec (training/rd.py)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on shared cores
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..training.rd import RDConfig, export_photo, train_rd

    # the token codec's defaults, where left as they are, become the photo codec's
    batch_size, crop = (int(_rd_default(k, v)) for k, v in (("batch_size", batch_size), ("crop", crop)))
    lr = float(_rd_default("lr", lr))
    run = run or Path.home() / ".cache" / "vqzip" / "runs" / out.name
    try:
        cfg = RDConfig(steps=steps, codec=config, batch_size=batch_size, crop=crop, lr=lr, seed=seed,
                       compile=compile_steps, ramp_from=_ramp_from(init, config, latent_ramp), ramp_steps=latent_ramp,
                       mean_shift=mean_shift)
        photos, source = _rd_images(datasets, data, crop, thumbnails, crops, seed)
        test_images, test_source = _rd_test_images(test, data)
        start = _photo_init(init, cfg.codec, seed) if init else None
    except (OSError, ValueError, VqzipError) as exc:
        fail(one_line(exc))
    columns = [BarColumn(), TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.3f} "
                                       "{task.fields[bpp]:.3f} bpp {task.fields[psnr]:.2f} dB {task.fields[sps]:.2f} s/step"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("train", total=steps, loss=0.0, bpp=0.0, psnr=0.0, sps=0.0)

        def on_log(r: dict[str, Any]) -> None:
            bar.update(task, completed=r["step"], loss=r["loss"], bpp=r["bpp"], psnr=r.get("psnr", float("nan")),
                       sps=r["s_per_step"])

        try:
            model = train_rd(photos, cfg, run, start, on_log)
        except KeyboardInterrupt as exc:
            fail(str(exc) or "interrupted", 130)
        except (ValueError, RuntimeError) as exc:
            fail(one_line(exc))
    entropy = "mean-scale hyperprior" + (f", {config.slices} channel-conditional slices" if config.slices > 1 else "") + (
        " in checkerboard halves" if config.checkerboard else "")
    kind = "small-image" if thumbnails or "cifar10" in datasets else "photo"  # by what it learned from, not its stride
    card: dict[str, Any] = {"summary": f"rate-distortion {kind} codec ({entropy}, {cfg.codec.qualities} "
                                       "qualities by gain vectors)",
                            "data": source, "test_data": test_source, "steps": steps, "batch_size": batch_size,
                            "lr": lr, "seed": seed, "lambdas": list(cfg.codec.lambdas),
                            "loss": "bpp + lambda[q] * 255^2 * MSE on [0, 1] images, one random quality per crop"
                                    + ("; the synthesis and contexts see round(y - mean) + mean (--mean-shift)"
                                       if mean_shift else ""),
                            "command": "vqzip " + " ".join(sys.argv[1:])}
    if init:
        card["init"] = {"model": init}
    with Progress(TextColumn("measuring real .vqz files, every quality"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("measure", total=model.qualities * len(test_images) if test_images else 0)
        card = export_photo(model, out, card, test_images, on_image=lambda n: bar.advance(task, n))
    err.print(f"wrote {out.with_suffix('.safetensors')} and {out.with_suffix('.json')} (model id {card['model_id']})")


def _ramp_from(init: str | None, config: Any, latent_ramp: int) -> int:
    """The first latent channel whose rate --latent-ramp ramps in: the first that --init lacks."""
    if not latent_ramp:
        return 0
    from ..zoo import load_model

    m = load_model(init) if init else None
    old = m.codec.config.latent if m is not None and m.is_hyperprior else None
    if old is None or old >= config.latent:
        raise VqzipError("--latent-ramp needs --init of a photo model with fewer latent channels than --latent")
    return int(old)


def _photo_init(init: str, config: Any, seed: int) -> dict[str, Any]:
    """The float weights of a photo model to start from: the same configuration, except that the
    lambdas may differ (the gain vectors of new ones are interpolated, codec.hyperprior.gains_for_lambdas),
    so may the slices and the checkerboard (a new context starts at zero corrections: the init's own
    coding), --residual may add blocks (new ones start as the identity), --channels may be wider, and
    --latent larger by whole slices of the init's width (the new channels start silent,
    codec.hyperprior.widened_state)."""
    from dataclasses import replace

    import torch

    from ..codec.hyperprior import PhotoCodec, gains_for_lambdas, widened_state
    from ..zoo import load_model

    m = load_model(init)
    if not m.is_hyperprior or replace(m.codec.config, lambdas=config.lambdas, slices=config.slices,
                                      context=config.context, channels=config.channels, latent=config.latent,
                                      checkerboard=config.checkerboard, residual=config.residual,
                                      prior_block=config.prior_block) != config:
        raise VqzipError(f"--init {init}: not a photo codec of this configuration")
    old = m.codec.config
    if config.residual < old.residual:
        raise VqzipError(f"--init {init}: --residual {config.residual} is fewer than its {old.residual}")
    if config.channels < old.channels:
        raise VqzipError(f"--init {init}: --channels {config.channels} is narrower than its {old.channels}")
    width = config.latent // config.slices
    if config.latent != old.latent and (config.latent < old.latent or width != old.latent // old.slices):
        raise VqzipError(f"--init {init}: --latent {config.latent} must add whole slices of its "
                         f"{old.latent // old.slices} channels to its {old.latent}")
    same_context = (width, config.context) == (old.latent // old.slices, old.context) and config.slices >= old.slices
    state = {k: v.float() for k, v in m.codec.state_dict().items() if same_context or not k.startswith("context.")}
    if len(old.lambdas) < 2 and old.lambdas != config.lambdas:
        raise VqzipError(f"--init {init}: a model of one quality cannot be given other lambdas")
    state = gains_for_lambdas(state, old.lambdas, config.lambdas)
    if (config.channels, config.latent) == (old.channels, old.latent):
        return state
    torch.manual_seed(seed)  # the fresh weights that read the new channels: repeatable, as a run from scratch
    return widened_state(state, PhotoCodec(config))


def _training_images(dataset: str, data: Path | None, crop: int, crops: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray | None, str, str | None]:
    """(train images, test images or None, source, test source) for 'cifar10' or a photo folder."""
    import numpy as np

    from ..training import data as datasets

    try:
        if dataset == "cifar10":
            train_images, _ = datasets.load_cifar10("train", data, download=True)
            test_images, _ = datasets.load_cifar10("test", data, download=True)
            return train_images, test_images, "CIFAR-10 train (50,000 images)", "CIFAR-10 test (10,000 images)"
        if Path(dataset).is_dir():
            photos = datasets.load_image_folder(Path(dataset))
            crops_ = datasets.random_crops(photos, crop, crops, np.random.default_rng(seed))
            return crops_, None, f"{crops} random {crop}x{crop} crops of {dataset}", None
    except (OSError, ValueError) as exc:
        fail(one_line(exc))
    fail(f"{dataset}: not 'cifar10' and not a folder", 2)


def train_prior(
    model: Annotated[str, typer.Argument(help="Model name or path; writes NAME.prior.safetensors beside it and "
                                              "updates NAME.json.")],
    dataset: Annotated[str, typer.Option("--dataset", help="'cifar10', or a folder of photos (random crops): the "
                                                           "model's own training data.")] = "cifar10",
    epochs: opt.Epochs = 4,
    batch_size: opt.BatchSize = 64,
    lr: opt.Lr = 3e-3,
    dim: Annotated[int, typer.Option("--dim", min=4, help="Width of the context network, 4..195 (wider integer sums "
                                                          "would not be exact).")] = 64,
    data: opt.TrainData = None,
    limit: opt.TrainLimit = None,
    device: opt.Device = "auto",
    threads: opt.Threads = None,
    resume: Annotated[bool, opt.resume("Continue from NAME.prior.ckpt.")] = False,
    seed: opt.Seed = 0,
    crop: opt.Crop = 256,
    crops: Annotated[int, opt.crops("Random crops for photo folders.")] = 2000,
    evaluate: Annotated[bool, opt.evaluate("Measure test-set bytes with both priors into the model card.")] = True,
) -> None:
    """Train a learned context prior for a trained model (format version 2: fewer bytes, same tokens)."""
    _need_torch("vqzip train-prior")
    import json

    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import zoo
    from ..coding.context import MAX_DIM
    from ..training.evaluate import measure_priors
    from ..training.prior_training import PriorTrainConfig, finished_epochs, model_tokens, train_context

    if dim > MAX_DIM:
        fail(f"--dim {dim} is too wide: at most {MAX_DIM} keeps the prior's integer sums exact", 2)
    try:
        m = zoo.load_model(model)
    except VqzipError as exc:
        fail(str(exc))
    if m.is_hyperprior:
        fail(f"model {m.name} is a photo codec: its hyperprior is trained with it (vqzip train --arch hyperprior)", 2)
    train_images, test_images, source, test_source = _training_images(dataset, data, crop, crops, seed)
    if limit:
        train_images = train_images[:limit]
    cfg = PriorTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, dim=dim)
    checkpoint = m.path.with_name(m.name + ".prior.ckpt")
    if resume and finished_epochs(checkpoint) >= epochs:  # only the export and the measurement are left
        tokens = np.zeros((0, m.qualities, 1, 1), np.int16)
    else:
        with Progress(TextColumn("tokens of the training images"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("tokens", total=len(train_images))
            tokens = model_tokens(m, train_images, on_batch=lambda n: bar.advance(task, n))
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("step {task.completed}/{task.total} {task.fields[bits]:.3f} bits/token {task.fields[ips]:.0f} img/s"),
               TimeElapsedColumn()]
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone reports and exports
    with Progress(*columns, console=err, disable=rank != 0) as bar:
        task = bar.add_task("train", total=1, epoch=0, epochs=epochs, bits=0.0, ips=0.0)

        def on_step(s: dict[str, Any]) -> None:
            bar.update(task, completed=s["step"], total=s["steps"], epoch=s["epoch"], bits=s["bits"], ips=s["images_per_s"])
            if s["step"] == s["steps"] and not err.is_terminal:  # logs get one line per epoch
                err.print(f"epoch {s['epoch']}/{s['epochs']}: {s['bits']:.3f} bits/token {s['images_per_s']:.0f} img/s")

        try:
            net = train_context(tokens, max(m.codec.quantizer.vocab_sizes), cfg, checkpoint, resume=resume, on_step=on_step)
        except RuntimeError as exc:
            fail(str(exc))
    path = zoo.save_context(m.path, net.cfg.to_dict(), net.to_integer())
    card = dict(m.card)
    card["context_prior"] = {
        "file": path.name, "config": net.cfg.to_dict(), "data": source, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "seed": seed, "limit": limit, "train_seconds": round(net.train_seconds),
        "hardware": f"{_device_name(cfg.device)}", "command": "vqzip " + " ".join(sys.argv[1:])}
    if evaluate and test_images is not None:
        m = zoo.load_model(m.path)
        with Progress(TextColumn("measuring real .vqz files, both priors"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("measure", total=len(test_images))
            rows = measure_priors(m, test_images, on_batch=lambda n: bar.advance(task, n))
        card["context_prior"]["results"] = {
            "dataset": test_source, "images": len(test_images),
            "method": "the same tokens coded with the static tables (format version 1) and with the context prior "
                      "(version 2): mean size of real .vqz files; the first 500 of each decoded back", "per_quality": rows}
        card["results"] = {**card.get("results", {}), "prior": "context (format version 2)",
                           "per_quality": [{"quality": r["quality"], "levels": r["levels"], "bytes": r["context_bytes"],
                                            "ideal_payload_bytes": r["context_ideal_payload_bytes"], "bpp": r["bpp"],
                                            "psnr": r["psnr"]} for r in rows]}
    tmp = m.path.with_name(m.name + ".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, m.path.with_name(m.name + ".json"))
    err.print(f"wrote {path} and {m.name}.json")


def _device_name(device: str) -> str:
    """What the card records as hardware: the GPU's name, or the CPU and torch's thread count."""
    import platform

    import torch

    from ..training.train import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        return torch.cuda.get_device_name(d)
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def export_onnx(
    models: Annotated[list[str], typer.Argument(help="Models (names or paths) to write the graphs of.")],
) -> None:
    """Write a model's networks as .onnx files beside its weights (<name>.<graph>.onnx), so that encode
    and decode run through ONNX Runtime without torch. The graphs read their weights from the model's
    .safetensors file and record its SHA-256; vqzip train writes them itself. Needs torch."""
    from ..zoo import export_onnx as export
    from ..zoo import resolve
    from .console import out

    _need_torch("vqzip export-onnx")
    try:
        for name in models:
            path = export(resolve(name))
            out.print(f"{name}: graphs written beside {path}", markup=False)
    except VqzipError as exc:
        fail(one_line(exc))
