"""`vqzip tokens` and `vqzip detokenize`: token files for ML work, from images, folders, a data set, and
sharded under torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from test_cli import one_line_error, run

from vqzip import api, tokenset


@pytest.fixture
def photos(tmp_path, tiny_env):
    """Five images of two sizes, two of them in a sub-folder."""
    rng = np.random.default_rng(5)
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    for i, rel in enumerate(["a.png", "b.png", "c.png", "sub/d.png", "sub/e.jpg"]):
        h, w = (20, 28) if i in (1, 2) else (16, 16)  # both sizes on both ranks of a 2-process run
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / "photos" / rel)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path


def _expected(folder, names, quality=2):
    m = api.load_model("tiny-rvq")
    return {n: api.image_tokens(np.asarray(Image.open(folder / n).convert("RGB"))[None], m, quality)[0] for n in names}


NAMES = ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.jpg"]


def test_tokens_of_a_folder_to_safetensors_and_back(photos):
    proc = run("tokens", "photos", "-o", "t.safetensors", "-m", "tiny-rvq", cwd=photos)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "tokenized 5 images" in proc.stderr.decode()
    with safe_open(str(photos / "t.safetensors"), "np") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert set(tensors) == {"tokens.16x16", "index.16x16", "tokens.20x28", "index.20x28"}
    assert meta["model"] == "tiny-rvq" and meta["quality"] == "2"
    assert meta["model_id"] == f"{api.load_model('tiny-rvq').model_id:04x}"
    assert json.loads(meta["info"]) == {"stride": 4, "levels": 2, "vocab_sizes": [16, 16]}
    assert json.loads(meta["names"]) == NAMES
    assert tensors["tokens.20x28"].shape == (2, 2, 5, 7) and tensors["tokens.20x28"].dtype == np.int16
    expect = _expected(photos / "photos", NAMES)
    for key in ("16x16", "20x28"):
        for i, grid in zip(tensors[f"index.{key}"], tensors[f"tokens.{key}"]):
            assert np.array_equal(grid, expect[NAMES[i]])
    (photos / "back").mkdir()
    proc = run("detokenize", "t.safetensors", "-O", "back", cwd=photos)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(str(p.relative_to(photos / "back")) for p in (photos / "back").rglob("*.png")) == \
        ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png"]
    m = api.load_model("tiny-rvq")
    assert np.array_equal(np.asarray(Image.open(photos / "back" / "c.png")),
                          api.token_images(expect["c.png"][None].astype(np.int64), m, 20, 28)[0])
    assert "exists" in run("detokenize", "t.safetensors", "-O", "back", cwd=photos).stderr.decode()


def test_tokens_to_npy_needs_one_size(photos):
    proc = run("tokens", "photos/a.png", "photos/sub/e.jpg", "-o", "t.npy", "-m", "tiny-rvq", "-Q", "3", cwd=photos)
    assert proc.returncode == 0, proc.stderr.decode()
    arr = np.load(photos / "t.npy")
    meta = json.loads((photos / "t.json").read_text())
    assert arr.shape == (2, 3, 4, 4) and meta["size"] == [16, 16] and meta["index"] == [0, 1]
    assert meta["names"] == ["a.png", "e.jpg"] and meta["quality"] == "3" and meta["info"]["vocab_sizes"] == [16] * 3
    ts = tokenset.read(photos / "t.npy")
    assert ts.count == 2 and ts.model == "tiny-rvq"
    line = one_line_error(run("tokens", "photos", "-o", "mixed.npy", "-m", "tiny-rvq", cwd=photos))
    assert "one size" in line and "16x16, 20x28" in line and not (photos / "mixed.npy").exists()
    assert "exists" in one_line_error(run("tokens", "photos/a.png", "-o", "t.npy", "-m", "tiny-rvq", cwd=photos))
    assert ".safetensors or .npy" in one_line_error(run("tokens", "photos", "-o", "t.pt", cwd=photos), 2)
    (photos / "out").mkdir()
    assert run("detokenize", "t.npy", "-O", "out", cwd=photos).returncode == 0
    assert sorted(p.name for p in (photos / "out").iterdir()) == ["a.png", "e.png"]


def test_detokenize_refuses_names_that_leave_the_folder(photos):
    m = api.load_model("tiny-rvq")
    ts = tokenset.TokenSet(m.name, m.model_id, 1, api.token_info(m, 1), ["../escape.png"],
                           [tokenset.TokenGroup((4, 4), np.zeros((1, 1, 1, 1), np.int16), np.zeros(1, np.int64))])
    [(path, blob)] = tokenset.encode(ts, photos / "evil.safetensors")
    path.write_bytes(blob)
    (photos / "o").mkdir()
    assert "would leave" in one_line_error(run("detokenize", "evil.safetensors", "-O", "o", cwd=photos))
    assert not (photos / "escape.png").exists()


def test_tokens_of_cifar10_with_labels(tmp_path, real_data, tiny_env):
    from vqzip.training.data import load_cifar10

    proc = run("tokens", "cifar10", "--split", "test", "--limit", "20", "-o", "c.safetensors", "-m", "tiny-rvq",
               "--data", real_data, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    ts = tokenset.read(tmp_path / "c.safetensors")
    [g] = ts.groups
    images, labels = load_cifar10("test", real_data)
    assert g.tokens.shape == (20, 2, 8, 8) and np.array_equal(g.labels, labels[:20]) and ts.names[0] == "00"
    assert ts.source == "cifar10 test"
    assert np.array_equal(g.tokens, api.image_tokens(images[:20], api.load_model("tiny-rvq"), 2))


def test_tokens_sharded_under_torchrun(photos):
    """Two processes (gloo): each takes every other input and writes a shard; rank 0 merges them into the
    same file one process writes, and deletes the shards."""
    assert run("tokens", "photos", "-o", "one.safetensors", "-m", "tiny-rvq", cwd=photos).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "vqzip", "tokens", "photos", "-o", "two.safetensors", "-m", "tiny-rvq"],
                          cwd=photos, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("tokenized 5 images") == 1
    one, two = (tokenset.read(photos / f"{n}.safetensors") for n in ("one", "two"))  # (metadata order varies)
    assert (one.model_id, one.quality, one.info, one.names) == (two.model_id, two.quality, two.info, two.names)
    for a, b in zip(one.groups, two.groups, strict=True):
        assert a.size == b.size and np.array_equal(a.index, b.index) and np.array_equal(a.tokens, b.tokens)
        assert a.tokens.dtype == b.tokens.dtype
    assert not list(photos.glob("*.rank*"))
