"""The torch-free runtime (vqzip.runtime, ONNX Runtime) against the torch path: same files, the same
integer tables, images within a grey level; and a process without torch encodes and decodes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqzip import api, zoo
from vqzip.codec.config import PhotoConfig, token_layout
from vqzip.errors import ModelNotFound
from vqzip.runtime import OnnxNets, onnx_path

DATA = Path(__file__).resolve().parent / "data"
SHIPPED = zoo.shipped_models()


@pytest.mark.parametrize("kind,args", [("rvq", {}), ("rvq", {"levels": 3, "codebook_size": 16}), ("vq", {}),
                                       ("simvq", {"codebook_size": 64}), ("byte", {"levels": 16, "channels": 2}),
                                       ("fsq", {}), ("lfq", {"bits": 6})])
def test_token_layout_is_the_quantizers_own(kind: str, args: dict) -> None:
    from vqzip.codec.quantizers import build_quantizer

    q = build_quantizer(kind, 8, **args)
    assert token_layout(kind, args) == (q.vocab_sizes, q.progressive)


def _backends(m: zoo.LoadedModel) -> tuple[OnnxNets, object]:
    from vqzip.codec.graphs import TorchNets

    return OnnxNets(m.path, m.digest, m.graphs), TorchNets(m.codec)


def _with(m: zoo.LoadedModel, nets: object) -> zoo.LoadedModel:
    m.__dict__["nets"] = nets  # the cached_property's slot: this model now runs on `nets`
    return m


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_has_its_graphs_bound_to_its_weights(name: str) -> None:
    m = zoo.load_model(name)
    for graph in m.graphs:
        path = onnx_path(m.path, graph)
        assert path.is_file() and path.stat().st_size < 100_000  # the graph only: weights stay in the .safetensors
        OnnxNets(m.path, m.digest, m.graphs).session(graph)  # loads, and its recorded digest is the weights'


def _pixels(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


@pytest.mark.parametrize("name,image", [("cifar10-rvq", "sample64.png"), ("cifar10-vq", "sample32.png"),
                                        ("cifar10-byte", "sample32.png"), ("photo-rvq", "sample64.png"),
                                        ("photo-hp", "sample128.png"), ("photo-cc", "sample128.png")])
def test_both_engines_write_the_same_files_and_decode_each_others(name: str, image: str) -> None:
    """Fresh encodes at the lowest, default and highest quality: the same bytes from ONNX Runtime and
    from torch (their networks agree closely enough that no token differs on these images; any file
    is valid either way), and each engine decodes the other's file to within one grey level."""
    m = zoo.load_model(name)
    onnx, torch_nets = _backends(m)
    img = _pixels(image)
    differing = []
    for q in sorted({1, m.default_quality, m.qualities}):
        a = api.compress(img, _with(m, onnx), q)
        b = api.compress(img, _with(m, torch_nets), q)
        assert a == b, f"quality {q}: the engines' files differ"
        by_onnx = np.asarray(api.decompress(a, _with(m, onnx))).astype(int)
        by_torch = np.asarray(api.decompress(a, _with(m, torch_nets))).astype(int)
        assert np.abs(by_onnx - by_torch).max() <= 1
        differing.append(int((by_onnx != by_torch).any(-1).sum()))
    _with(m, onnx)
    # how many pixels differ (by one grey level) between the engines' decodes, per quality
    assert sum(differing) <= 0.01 * img.shape[0] * img.shape[1] * len(differing), differing


@pytest.mark.parametrize("sample", ["sample-v1.vqz", "sample-v2.vqz", "sample-v3.vqz",
                                    "photo-rvq-v1-sample64.vqz"])
def test_committed_files_decode_alike_on_both_engines(sample: str) -> None:
    """Every format version's sample: the tokens (integer tables only, the same code for both) and
    the images within one grey level."""
    data = (DATA / sample).read_bytes()
    header = api.container.parse_header(data)[0]
    m = zoo.load_model(zoo.find_by_id(header.model_id))
    onnx, torch_nets = _backends(m)
    by_onnx = np.asarray(api.decompress(data, _with(m, onnx))).astype(int)
    by_torch = np.asarray(api.decompress(data, _with(m, torch_nets))).astype(int)
    _with(m, onnx)
    assert np.abs(by_onnx - by_torch).max() <= 1
    assert (by_onnx != by_torch).any(-1).mean() < 0.01


def test_graphs_of_other_weights_are_refused(tmp_path: Path) -> None:
    src = zoo.resolve("cifar10-vq")
    weights = tmp_path / "copy-of-vq.safetensors"  # as long as the original's name: the graphs' byte strings keep their length
    weights.write_bytes(src.read_bytes())
    for graph in ("encode", "decode"):
        onnx_path(weights, graph).write_bytes(onnx_path(src, graph).read_bytes().replace(b"cifar10-vq", b"copy-of-vq"))
    m = zoo.load_model(weights)
    assert m.nets.run("encode", x=np.zeros((1, 3, 8, 8), np.float32)).shape == (1, 1, 2, 2)  # same weights: fine
    weights.write_bytes(src.read_bytes()[:-4] + b"\0\0\0\0")  # other weights, same layout
    zoo.digest.cache_clear()
    zoo._load.cache_clear()
    with pytest.raises(ModelNotFound, match="made from other weights"):
        zoo.load_model(weights).nets.run("encode", x=np.zeros((1, 3, 8, 8), np.float32))


def test_a_model_without_graphs_runs_on_torch_or_says_how_to_export(tiny_models: Path, monkeypatch) -> None:
    """A model saved by zoo.save_model has its graphs already; one without them (removed here) runs
    on torch under the auto backend, and VQZIP_BACKEND=onnx names the command that writes them."""
    path = tiny_models / "tiny-rvq.safetensors"
    graphs = zoo.load_model(path).graphs
    assert graphs == ("encode", "decode-1", "decode-2", "decode-3")
    saved = {g: onnx_path(path, g).read_bytes() for g in graphs}
    try:
        for g in saved:
            onnx_path(path, g).unlink()
        zoo._load.cache_clear()
        img = np.zeros((16, 16, 3), np.uint8)
        assert api.decompress(api.compress(img, str(path)), str(path)).size == (16, 16)
        zoo._load.cache_clear()
        monkeypatch.setenv("VQZIP_BACKEND", "onnx")
        with pytest.raises(ModelNotFound, match="vqzip export-onnx"):
            api.compress(img, str(path))
    finally:
        for g, blob in saved.items():
            onnx_path(path, g).write_bytes(blob)
        zoo._load.cache_clear()


NO_TORCH = "import sys; sys.modules['torch'] = None; "  # `import torch` now fails, as where it is not installed


def _without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VQZIP_BACKEND"}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def test_a_process_without_torch_encodes_decodes_and_refuses_training_in_one_line(tmp_path: Path) -> None:
    Image.open(DATA / "sample128.png").save(tmp_path / "a.png")
    run = ("from vqzip.cli import app; import sys; from typer.testing import CliRunner; r = CliRunner(); "
           "codes = [r.invoke(app, a).exit_code for a in ({})]; print(codes, 'torch' in sys.modules and "
           "sys.modules['torch'] is not None)")
    steps = ("['encode', 'a.png', '-o', 'a.vqz'], ['encode', 'a.png', '-m', 'photo-hp', '-o', 'b.vqz'], "
             "['decode', 'a.vqz', '-o', 'a2.png'], ['decode', 'b.vqz', '-o', 'b2.png'], ['info', 'a.vqz'], "
             "['verify', 'a.vqz', 'b.vqz'], ['models']")
    proc = _without_torch(run.format(steps), tmp_path)
    assert proc.stdout.strip() == f"{[0] * 7} False", proc.stdout + proc.stderr
    assert Image.open(tmp_path / "b2.png").size == (128, 128)
    for cmd in (["train", "cifar10", "--out", "m"], ["train-prior", "cifar10-rvq"], ["export-onnx", "cifar10-rvq"],
                ["encode", "a.png", "-m", "photo-hp", "--effort", "2", "-o", "c.vqz"]):
        proc = subprocess.run([sys.executable, "-c", NO_TORCH + "from vqzip.cli import main; import sys; "
                               f"sys.argv = ['vqzip', *{cmd!r}]; main()"], capture_output=True, text=True, cwd=tmp_path,
                              timeout=300)
        assert proc.returncode == 1 and "needs torch" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            (cmd, proc.stderr)


@pytest.mark.parametrize("downsamples", [4, 3, 2])
def test_photo_config_strides_are_the_codecs(downsamples: int) -> None:
    """The strides the runtime pads and checks files by are those the networks have."""
    import torch

    from vqzip.codec.hyperprior import PhotoCodec

    config = PhotoConfig(channels=8, latent=8, hyper=8, downsamples=downsamples)
    codec, side = PhotoCodec(config), 2 * config.stride
    q = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        y = codec.analysis(torch.zeros(1, 3, side, side), q)
        z, x_hat = codec.h_a(y), codec.synthesis(y, q)
    assert y.shape[-2:] == (side // config.latent_stride,) * 2
    assert z.shape[-2:] == (2, 2) and codec.h_s(z)[0].shape == y.shape
    assert x_hat.shape[-2:] == (side, side)


def test_one_thread_children(monkeypatch):
    """Worker processes started in the block get one BLAS/OpenMP thread; this process's variables are
    restored after it, set or not."""
    from vqzip.runtime import THREAD_VARS, one_thread_children

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    show = f"import os; print(' '.join(os.environ.get(v, '-') for v in {THREAD_VARS!r}))"
    with one_thread_children():
        child = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True).stdout.split()
    assert child == ["1"] * len(THREAD_VARS)
    assert os.environ["OMP_NUM_THREADS"] == "2" and "OPENBLAS_NUM_THREADS" not in os.environ
