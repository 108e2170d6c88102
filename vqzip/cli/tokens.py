"""Commands for ML work: `tokens` (images, folders or a data set -> their token grids, in one file) and
`detokenize` (a token file -> images). The file layouts are in vqzip/tokenset.py.

Under `torchrun` (WORLD_SIZE > 1) `tokens` runs sharded: rank r takes inputs r, r + world, ...,
writes OUT.rank{r}; an all-reduce over gloo (which doubles as the barrier) then lets rank 0 merge the
shards into OUT and delete them. Any launcher that sets torchrun's variables works the same way.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ..errors import VqzipError
from . import options as opt
from .console import Failure, err, error, fail, one_line, progress, reporting
from .files import read, refuse_clobber, write_atomic
from .walk import expand, image_name, make_parent

if TYPE_CHECKING:
    import numpy as np

    from ..tokenset import TokenSet

DATASETS = ("cifar10",)


def _rank() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun; (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def tokens(
    inputs: Annotated[list[str], typer.Argument(help="Images, folders (every file beneath them with an image "
                                                     "extension), or a data set: 'cifar10'.", show_default=False)],
    output: Annotated[str, opt.output("OUT.safetensors (images of any sizes) or OUT.npy (one size; its metadata "
                                      "goes to OUT.json beside it).")],
    model: Annotated[str | None, opt.model("Model name or path (default: the shipped default).")] = None,
    quality: Annotated[int | None, opt.quality("Quality level: how many token levels (default: the model's "
                                               "middle).")] = None,
    split: Annotated[Literal["train", "test"], typer.Option("--split", help="The data set's split.")] = "train",
    data: Annotated[Path | None, opt.data("Folder holding CIFAR-10 (default: $VQZIP_DATA, the cache, or "
                                          "download).")] = None,
    limit: Annotated[int | None, opt.limit("The first N images only.")] = None,
    batch: opt.Batch = 64, threads: opt.Threads = None,
    force: opt.Force = False, quiet: opt.Quiet = False,
) -> None:
    """Write the token grids of images, folders or a data set to one .safetensors or .npy file, with the
    model, quality, vocabulary and grid shape (sharded under torchrun)."""
    import numpy as np

    from .. import api, tokenset

    rank, world = _rank()
    quiet = quiet or rank > 0  # one process reports
    try:
        layout = tokenset.kind(output)
    except VqzipError as exc:
        fail(str(exc), 2)
    out = Path(output)
    try:
        for path in [out] + ([tokenset.sidecar(out)] if layout == ".npy" else []):
            refuse_clobber(path, force)
        m = api.load_model(model)
        q = api.resolve_quality(m, quality)
    except (Failure, VqzipError) as exc:
        fail(str(exc))
    dataset = len(inputs) == 1 and inputs[0] in DATASETS and not Path(inputs[0]).exists()
    labels: np.ndarray | None = None
    if dataset:
        from ..training.data import DataNotFound, load_cifar10

        try:
            images, labels = load_cifar10(split, data, download=True)
        except (DataNotFound, ValueError, OSError) as exc:
            fail(one_line(exc))
        images, labels = images[:limit], labels[:limit]
        names = [f"{i:0{len(str(max(len(images) - 1, 0)))}d}" for i in range(len(images))]
        source = f"{inputs[0]} {split}"
    else:
        files, under, _ = expand(inputs, True, image_name)  # by name: every rank lists the same files, opens its own
        files = files[:limit]
        assert under is not None
        names = [(u / Path(f).name).as_posix() for f, u in zip(files, under)]
        source = "files"
    if world > 1:
        from ..runtime import requires_torch

        try:
            requires_torch("a sharded run (torchrun)")
        except VqzipError as exc:
            fail(str(exc))
        import torch.distributed as dist

        dist.init_process_group("gloo")
    mine = list(range(rank, len(names), world))
    groups: dict[tuple[int, int], tuple[list[np.ndarray], list[int], list[int]]] = {}
    failed = 0
    with reporting(quiet), progress(quiet, len(mine)) as bar:
        task = bar.add_task("tokenizing", total=len(mine))
        start = 0
        while start < len(mine):  # up to --batch images, past the first only while under api.PASS_PIXELS
            pixels: list[tuple[int, np.ndarray]] = []
            end, held = start, 0
            while end < len(mine) and end - start < batch and api.has_room(len(pixels), held, batch):
                i, end = mine[end], end + 1
                try:
                    rgb = images[i] if dataset else _load(files[i])
                except Failure as exc:
                    failed += 1
                    error(exc)
                    continue
                pixels.append((i, rgb))
                held += rgb.shape[0] * rgb.shape[1]
            by_size: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
            for i, rgb in pixels:
                by_size.setdefault(rgb.shape[:2], []).append((i, rgb))
            for size, same in by_size.items():
                for items in api.passes(same, size[0] * size[1]):
                    grid = api.image_tokens(np.stack([rgb for _, rgb in items]), m, q)
                    acc = groups.setdefault(size, ([], [], []))
                    acc[0].append(tokenset.compact(grid))
                    acc[1].extend(i for i, _ in items)
                    if labels is not None:
                        acc[2].extend(int(labels[i]) for i, _ in items)
            bar.advance(task, end - start)
            start = end
    part = tokenset.TokenSet(m.name, m.model_id, q, api.token_info(m, q), names, [
        tokenset.TokenGroup(size, np.concatenate(t), np.asarray(idx, np.int64),
                            np.asarray(lab, np.int64) if labels is not None else None)
        for size, (t, idx, lab) in sorted(groups.items())], source)
    if world == 1:
        whole = tokenset.merge([part])
        _write(whole, out, force)
        merged: TokenSet | None = whole
        total_failed = failed
    else:
        total_failed, merged = _gather(part, out, rank, world, failed, force)
    if merged is not None and not quiet:
        shapes = ", ".join(f"{g.key}: {tuple(g.tokens.shape)} {g.tokens.dtype}" for g in merged.groups) or "none"
        err.print(f"tokenized {merged.count} image{'s' * (merged.count != 1)}" +
                  (f", {total_failed} failed" if total_failed else "") + f" -> {out} ({shapes})", soft_wrap=True)
    if failed or (rank == 0 and total_failed):
        raise typer.Exit(1)


def _load(name: str) -> np.ndarray:
    """The RGB pixels of an image file, as the codec sees them (orientation applied, modes converted)."""
    from PIL import Image, UnidentifiedImageError

    from .. import api
    from ..coding.container import check_size

    try:
        img = Image.open(io.BytesIO(read(name)))
        img.load()
        check_size(img.width, img.height)
        return api.image_rgb(img)
    except UnidentifiedImageError:
        raise Failure(f"{name}: not an image Pillow can read") from None
    except (VqzipError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise Failure(f"{name}: {exc}") from None


def _write(ts: TokenSet, out: Path, force: bool) -> None:
    from .. import tokenset

    try:
        for path, blob in tokenset.encode(ts, out):
            write_atomic(path, blob, force)
    except (Failure, VqzipError) as exc:
        fail(str(exc))


def _gather(part: TokenSet, out: Path, rank: int, world: int, failed: int, force: bool) -> tuple[int, TokenSet | None]:
    """Sharded run: write this rank's shard, wait for every rank (an all-reduce of the failure count),
    and on rank 0 merge the shards into `out` and delete them. Returns the failures of all ranks, and
    on rank 0 the merged set."""
    import torch
    import torch.distributed as dist

    from .. import tokenset

    shard = out.with_name(f"{out.name}.rank{rank}")
    [(_, blob)] = tokenset.encode(part, shard, layout=".safetensors")
    shard.write_bytes(blob)
    count = torch.tensor([failed])
    dist.all_reduce(count)  # every shard is on disk once this returns
    merged = None
    try:
        if rank == 0:
            shards = [out.with_name(f"{out.name}.rank{r}") for r in range(world)]
            merged = tokenset.merge([tokenset.read(s, layout=".safetensors") for s in shards])
            try:
                _write(merged, out, force)
            finally:
                for s in shards:
                    s.unlink(missing_ok=True)
    finally:
        dist.destroy_process_group()
    return int(count.item()), merged


def detokenize(
    source: Annotated[str, typer.Argument(help="A token file written by 'vqzip tokens' (.safetensors or .npy).",
                                          show_default=False)],
    out_dir: opt.OutDir = None,
    batch: opt.Batch = 64, threads: opt.Threads = None,
    force: opt.Force = False, quiet: opt.Quiet = False,
) -> None:
    """Turn a token file back into images: one PNG per image under -O DIR, named after its input."""
    import numpy as np
    from PIL import Image

    from .. import api, tokenset, zoo

    if out_dir is None:
        fail("name the folder for the images with -O DIR", 2)
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir} is not a folder", 2)
    try:
        ts = tokenset.read(source)
        m = api.load_model(zoo.find_by_id(ts.model_id))
    except VqzipError as exc:
        fail(str(exc))
    done = failed = 0
    with reporting(quiet), progress(quiet, ts.count) as bar:
        task = bar.add_task("decoding", total=ts.count)
        for g in ts.groups:
            for run in api.passes(range(len(g.index)), g.size[0] * g.size[1], batch):
                grid = np.asarray(g.tokens[run[0]: run[-1] + 1], dtype=np.int64)
                for i, rgb in zip(g.index[run[0]: run[-1] + 1], api.token_images(grid, m, *g.size, quality=ts.quality)):
                    try:
                        target = _image_path(out_dir, ts.names[int(i)])
                        make_parent(target)
                        buf = io.BytesIO()
                        Image.fromarray(rgb, "RGB").save(buf, "PNG")
                        write_atomic(target, buf.getvalue(), force)
                    except Failure as exc:
                        failed += 1
                        error(exc)
                    else:
                        done += 1
                    bar.advance(task)
    if not quiet and done:
        err.print(f"decoded {done} image{'s' * (done != 1)}" + (f", {failed} failed" if failed else "") +
                  f" -> {out_dir}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _image_path(out_dir: Path, name: str) -> Path:
    """Where an image of a token file goes: its name under out_dir, as a .png; never outside out_dir."""
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise Failure(f"{name!r}: an image name that would leave {out_dir}")
    return out_dir / rel.with_suffix(".png")
