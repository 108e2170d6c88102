"""The vqzip command as a user runs it: outputs, overwrite rules, and one-line errors for bad input."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqzip.coding import container


def run(*args, cwd, input=None, **env_overrides):
    env = {**os.environ, **env_overrides}
    return subprocess.run([sys.executable, "-m", "vqzip", *map(str, args)], cwd=cwd, input=input,
                          capture_output=True, env=env, timeout=300)


def one_line_error(proc, code=1):
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.fixture
def work(tmp_path, tiny_env):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    return tmp_path


def test_help_and_version(tmp_path):
    assert run("--version", cwd=tmp_path).stdout.decode().startswith("vqzip ")
    assert "encode" in run("--help", cwd=tmp_path).stdout.decode()
    assert "vqzip decode [OPTIONS]" in run("decode", "--help", cwd=tmp_path).stdout.decode()
    typo = run("decod", "x.vqz", cwd=tmp_path)
    assert typo.returncode == 2 and "No such command 'decod'" in typo.stderr.decode()


def test_a_command_builds_only_its_own_options(monkeypatch):
    """`vqzip X` turns only X's signature into options at start-up; `vqzip --version`, `--help` and an
    unknown name get the whole app."""
    import vqzip.cli as cli

    built = []
    real = cli.build_app
    monkeypatch.setattr(cli, "build_app", lambda names=tuple(cli.COMMANDS): built.append(list(names)) or real(names))
    for argv, expect in ((["vqzip", "models"], [["models"]]), (["vqzip", "--version"], [])):
        built.clear()
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as end:
            cli.main()
        assert end.value.code == 0 and built == expect


def test_encode_decode_info_round_trip(work):
    assert run("encode", "img.png", "-m", "tiny-rvq", "-q", cwd=work).returncode == 0
    assert (work / "img.vqz").is_file()
    proc = run("decode", "img.vqz", "-o", "back.png", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(work / "back.png").size == (30, 20)
    info = run("info", "img.vqz", cwd=work).stdout.decode()
    assert "tiny-rvq" in info and "30x20 RGB" in info and "checksum   ok" in info


def test_decode_never_clobbers_the_original(work):
    run("encode", "img.png", "-m", "tiny-rvq", cwd=work)
    before = (work / "img.png").read_bytes()
    line = one_line_error(run("decode", "img.vqz", cwd=work))
    assert "img.png exists" in line and "-f" in line
    assert (work / "img.png").read_bytes() == before
    assert run("decode", "img.vqz", "-f", cwd=work).returncode == 0


def test_stdin_to_stdout(work):
    proc = run("encode", "-", "-m", "tiny-rvq", cwd=work, input=(work / "img.png").read_bytes())
    assert proc.returncode == 0 and proc.stdout[:2] == container.MAGIC
    back = run("decode", "-", cwd=work, input=proc.stdout)
    assert back.returncode == 0 and back.stdout[:4] == b"\x89PNG"


def test_many_inputs_to_a_folder(work):
    for i in range(3):
        Image.new("RGB", (8 + i, 8)).save(work / f"m{i}.png")
    (work / "out").mkdir()
    proc = run("encode", "m0.png", "m1.png", "m2.png", "-O", "out", "-m", "tiny-rvq", cwd=work)
    assert proc.returncode == 0 and "encoded 3 files" in proc.stderr.decode()
    assert sorted(p.name for p in (work / "out").iterdir()) == ["m0.vqz", "m1.vqz", "m2.vqz"]


def test_out_dir_is_created_and_must_be_a_folder(work):
    proc = run("encode", "img.png", "-O", "new/deeper", "-m", "tiny-rvq", cwd=work)
    assert proc.returncode == 0 and (work / "new" / "deeper" / "img.vqz").is_file()
    back = run("decode", "new/deeper/img.vqz", "-O", "pngs", cwd=work)
    assert back.returncode == 0 and (work / "pngs" / "img.png").is_file()
    (work / "plain").write_text("a file")
    assert "plain is not a folder" in one_line_error(run("encode", "img.png", "-O", "plain", "-m", "tiny-rvq", cwd=work), 2)


def test_not_an_image(work):
    (work / "notes.png").write_text("hello")
    assert "not an image" in one_line_error(run("encode", "notes.png", "-m", "tiny-rvq", cwd=work))
    assert not (work / "notes.vqz").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_vqz(work, damage):
    run("encode", "img.png", "-m", "tiny-rvq", cwd=work)
    data = bytearray((work / "img.vqz").read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x10
    (work / "bad.vqz").write_bytes(bytes(data))
    line = one_line_error(run("decode", "bad.vqz", cwd=work))
    assert "truncated" in line or "checksum" in line
    assert not (work / "bad.png").exists()


def test_model_not_installed(work):
    run("encode", "img.png", "-m", "tiny-rvq", cwd=work)
    line = one_line_error(run("decode", "img.vqz", "-o", "x.png", cwd=work, VQZIP_MODELS=str(work / "nowhere")))
    assert "model id" in line and "not installed" in line
    assert not (work / "x.png").exists()


def test_absurd_dimensions(work):
    big = container._varint(60000)
    (work / "huge.vqz").write_bytes(b"VQ\x01\x12\x34" + big + big + b"\x08" + bytes(10))
    assert "exceeds the limit" in one_line_error(run("decode", "huge.vqz", cwd=work))


def test_unwritable_output(work):
    line = one_line_error(run("encode", "img.png", "-m", "tiny-rvq", "-o", work / "no" / "such" / "dir.vqz", cwd=work))
    assert "cannot write" in line
    assert not list(work.glob("*.tmp")) and not list(work.glob(".*.tmp"))


def test_usage_errors_exit_2(work):
    assert run("encode", "img.png", "img.png", "-o", "x.vqz", cwd=work).returncode == 2
    assert run("encode", cwd=work).returncode == 2


def test_demo_runs_offline_with_the_shipped_model(tmp_path):
    proc = run("demo", "--cifar", "0", "--out", "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "built-in sample" in proc.stdout.decode()
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {"sample.png", "sample.vqz", "sample-decoded.png"}
    again = run("demo", "--cifar", "0", "--out", "demo", cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr.decode()  # never clobbers without -f


def test_prior_option_and_info_show_the_version(work):
    assert run("encode", "img.png", "-m", "tiny-ctx", "-o", "ctx.vqz", cwd=work).returncode == 0
    assert run("encode", "img.png", "-m", "tiny-ctx", "--prior", "static", "-o", "st.vqz", cwd=work).returncode == 0
    assert "version 2 (context prior)" in run("info", "ctx.vqz", cwd=work).stdout.decode()
    assert "version 1 (static tables)" in run("info", "st.vqz", cwd=work).stdout.decode()
    assert (work / "ctx.vqz").read_bytes()[2] == 2 and (work / "st.vqz").read_bytes()[2] == 1
    for name in ("ctx", "st"):
        assert run("decode", f"{name}.vqz", "-o", f"{name}.png", cwd=work).returncode == 0
    assert np.array_equal(np.asarray(Image.open(work / "ctx.png")), np.asarray(Image.open(work / "st.png")))
    line = one_line_error(run("encode", "img.png", "-m", "tiny-rvq", "--prior", "context", "-o", "x.vqz", cwd=work))
    assert "no context prior" in line and not (work / "x.vqz").exists()


def test_train_prior_on_a_photo_folder(work, tiny_env):
    import shutil

    models = work / "models"
    models.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_env / f"tiny-rvq{suffix}", models)
    photos = work / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((40, 48, 3)) * 255).astype(np.uint8)).save(photos / f"{i}.png")
    proc = run("train-prior", models / "tiny-rvq.safetensors", "--dataset", photos, "--crop", "32", "--crops", "16",
               "--epochs", "1", "--dim", "8", "--device", "cpu", cwd=work)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (models / "tiny-rvq.prior.safetensors").is_file()
    assert "context_prior" in (models / "tiny-rvq.json").read_text()
    assert run("encode", "img.png", "-m", models / "tiny-rvq.safetensors", cwd=work).returncode == 0
    assert (work / "img.vqz").read_bytes()[2] == 2
    assert run("decode", "img.vqz", "-m", models / "tiny-rvq.safetensors", "-o", "b.png", cwd=work).returncode == 0


def test_train_prior_refuses_a_width_that_cannot_be_exact(work, tiny_env):
    """Checked before any data is read or tokens computed, not after the training."""
    from vqzip.coding.context import MAX_DIM

    proc = run("train-prior", tiny_env / "tiny-rvq.safetensors", "--dim", MAX_DIM + 1, "--data", work / "missing", cwd=work)
    line = one_line_error(proc, 2)
    assert f"at most {MAX_DIM}" in line
    assert f"4..{MAX_DIM}" in run("train-prior", "--help", cwd=work, COLUMNS="200").stdout.decode()


def test_train_init_errors_are_one_line(work, tiny_env):
    """--init names a model that is missing, or one of another architecture: one line, exit 1."""
    photos = work / "photos"
    photos.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(photos / "0.png")
    common = ("train", photos, "--out", "m", "--crop", "32", "--crops", "8", "--epochs", "1", "--device", "cpu")
    assert "not found" in one_line_error(run(*common, "--init", "no-such-model", cwd=work))
    assert "differs" in one_line_error(run(*common, "--init", "tiny-rvq", "--channels", "12", cwd=work))
    assert not list(work.glob("m.*"))


def test_train_under_torchrun_exports_once(work):
    """The README's multi-GPU command, on CPU: two DDP processes (gloo), rank 0 alone reports and writes."""
    photos = work / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 48, 3)) * 255).astype(np.uint8)).save(photos / f"{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "vqzip", "train", "photos", "--out", "m", "--crop", "32", "--crops", "64",
                           "--epochs", "1", "--batch-size", "8", "--channels", "8", "--latent-dim", "8",
                           "--levels", "2", "--codebook-size", "16", "--device", "cpu"],
                          cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "m.safetensors").is_file() and (work / "m.json").is_file()
    assert proc.stderr.count("wrote ") == 1 and "epoch 0/" not in proc.stderr
    assert run("encode", "img.png", "-m", work / "m.safetensors", cwd=work).returncode == 0


def test_bench_reprints_an_earlier_runs_tables(tmp_path):
    """`vqzip bench results.json` prints a committed run's tables again (with today's report, e.g.
    the equal-PSNR table) without measuring anything; anything else gets a one-line error."""
    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "kodak-photo" / "results.json"
    proc = run("bench", committed, cwd=tmp_path, COLUMNS="200")
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "BD-rate" in text and "at the same PSNR" in text and "vqzip:photo-rvq" in text
    assert not any(tmp_path.iterdir())  # nothing written
    (tmp_path / "other.json").write_text('{"points": []}')
    assert "not the results.json of a vqzip bench run" in one_line_error(run("bench", tmp_path / "other.json", cwd=tmp_path))
    one_line_error(run("bench", tmp_path / "missing.json", cwd=tmp_path))


def _camera_jpeg(path, orientation=6, size=(24, 16)):
    """A JPEG as a camera writes one: an ICC profile, EXIF with a make and an orientation."""
    exif = Image.Exif()
    exif[0x010F] = "vqzip test camera"
    exif[0x0112] = orientation
    arr = (np.random.default_rng(1).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, "JPEG", exif=exif.tobytes(), icc_profile=b"an ICC profile" * 20)


def test_metadata_is_kept_and_orientation_honoured(work):
    _camera_jpeg(work / "cam.jpg")
    assert run("encode", "cam.jpg", "-m", "tiny-rvq", cwd=work).returncode == 0
    assert (work / "cam.vqz").read_bytes()[2] & 0x80
    assert "ICC profile 280 bytes, EXIF" in run("info", "cam.vqz", cwd=work).stdout.decode()
    for name in ("back.png", "back.jpg", "back.webp"):
        assert run("decode", "cam.vqz", "-o", name, cwd=work).returncode == 0
        back = Image.open(work / name)
        assert back.size == (16, 24)  # turned the way the original displayed
        assert back.info["icc_profile"] == b"an ICC profile" * 20, name
        assert back.getexif()[0x0112] == 1 and back.getexif()[0x010F] == "vqzip test camera", name
    assert run("encode", "cam.jpg", "-m", "tiny-rvq", "--metadata", "icc", "-o", "icc.vqz", cwd=work).returncode == 0
    assert run("decode", "icc.vqz", cwd=work).returncode == 0
    icc = Image.open(work / "icc.png")
    assert "icc_profile" in icc.info and not icc.getexif() and icc.size == (16, 24)
    assert run("encode", "cam.jpg", "-m", "tiny-rvq", "--metadata", "none", "-o", "none.vqz", cwd=work).returncode == 0
    assert (work / "none.vqz").read_bytes()[2] == 1
    assert "metadata   none" in run("info", "none.vqz", cwd=work).stdout.decode()
    assert run("encode", "cam.jpg", "--metadata", "some", "-o", "x.vqz", cwd=work).returncode == 2


def test_rate_and_quality_targets(work, tiny_env):
    sizes = {}
    for q in (1, 2, 3):
        assert run("encode", "img.png", "-m", "tiny-rvq", "-Q", q, "-o", f"q{q}.vqz", cwd=work).returncode == 0
        sizes[q] = (work / f"q{q}.vqz").stat().st_size
    proc = run("encode", "img.png", "-m", "tiny-rvq", "--size", sizes[2], "-o", "s.vqz", "-v", cwd=work)
    assert proc.returncode == 0 and "quality 2" in proc.stderr.decode()
    assert (work / "s.vqz").read_bytes() == (work / "q2.vqz").read_bytes()
    assert run("encode", "img.png", "-m", "tiny-rvq", "--bpp", 8 * sizes[3] / 600, "-o", "b.vqz", cwd=work).returncode == 0
    assert (work / "b.vqz").read_bytes() == (work / "q3.vqz").read_bytes()
    proc = run("encode", "img.png", "-m", "tiny-rvq", "--size", 5, "-o", "tiny.vqz", cwd=work)  # out of reach
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 0 and lines[0].startswith("warning: img.png: 5 bytes is out of reach"), lines
    assert f"makes {sizes[1]} bytes" in lines[0] and (work / "tiny.vqz").stat().st_size == sizes[1]
    # a PSNR target with a shipped model, whose PSNR rises with quality: sample32.png reaches 25.68 dB at quality 3
    sample = Path(__file__).resolve().parent / "data" / "sample32.png"
    proc = run("encode", sample, "-m", "cifar10-rvq", "--psnr", "25", "-o", "p.vqz", cwd=work)
    assert proc.returncode == 0 and "quality 3" in run("info", "p.vqz", cwd=work).stdout.decode()
    proc = run("encode", sample, "-m", "cifar10-rvq", "--psnr", "45", "-o", "p45.vqz", cwd=work)
    assert "45 dB is out of reach for model cifar10-rvq; its highest quality, 10, reaches" in proc.stderr.decode()
    assert "quality 10" in run("info", "p45.vqz", cwd=work).stdout.decode()
    assert "not --size and -Q" in one_line_error(run("encode", "img.png", "--size", 100, "-Q", 2, cwd=work), 2)
    assert "must be positive" in one_line_error(run("encode", "img.png", "--psnr", "-3", cwd=work), 2)


def test_without_m_a_photos_quality_is_a_rung_of_the_photo_ladder(work):
    """-Q without -m on a photo picks a rung of pick.PHOTO_LADDER (the photo codec's low qualities, the
    small-image model's high ones), printed with -v and named by info; a rung the ladder lacks is one
    line of error and no file."""
    from vqzip import pick

    side = pick.PHOTO_MIN_SIDE
    Image.fromarray((np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)).save(work / "photo.png")
    for rung in (1, len(pick.PHOTO_LADDER)):
        name, q = pick.PHOTO_LADDER[rung - 1]
        proc = run("encode", "photo.png", "-Q", rung, "-o", f"r{rung}.vqz", "-v", cwd=work)
        assert proc.returncode == 0 and f"model {name} quality {q}" in proc.stderr.decode()
        info = run("info", f"r{rung}.vqz", cwd=work).stdout.decode()
        assert name in info and f"quality {q}" in info
    beyond = len(pick.PHOTO_LADDER) + 1
    line = one_line_error(run("encode", "photo.png", "-Q", beyond, "-o", "x.vqz", cwd=work))
    assert f"quality {beyond} is outside 1..{len(pick.PHOTO_LADDER)} for photos" in line and not (work / "x.vqz").exists()


def test_recursive_mirrors_a_tree(work):
    tree = work / "photos"
    (tree / "sub" / "deep").mkdir(parents=True)
    rng = np.random.default_rng(2)
    for rel in ("a.png", "sub/b.png", "sub/deep/c.jpg"):
        Image.fromarray((rng.random((8, 12, 3)) * 255).astype(np.uint8)).save(tree / rel)
    (tree / "notes.txt").write_text("not an image")
    (work / "out").mkdir()
    proc = run("encode", "-r", "photos", "-O", "out", "-m", "tiny-rvq", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "encoded 3 files, 1 skipped" in proc.stderr.decode()
    assert sorted(str(p.relative_to(work / "out")) for p in (work / "out").rglob("*.vqz")) == \
        ["a.vqz", "sub/b.vqz", "sub/deep/c.vqz"]
    (work / "out" / "sub" / "readme.md").write_text("skipped too")
    (work / "back").mkdir()
    proc = run("decode", "--recursive", "out", "-O", "back", cwd=work)
    assert proc.returncode == 0 and "decoded 3 files, 1 skipped" in proc.stderr.decode()
    assert Image.open(work / "back" / "sub" / "deep" / "c.png").size == (12, 8)
    proc = run("encode", "-r", "photos", "-m", "tiny-rvq", "-q", cwd=work)  # no -O: beside each input
    assert proc.returncode == 0 and (tree / "sub" / "deep" / "c.vqz").is_file() and (tree / "a.vqz").is_file()
    proc = run("encode", "-r", "photos", "-m", "tiny-rvq", cwd=work)  # the .vqz files are not images: skipped
    assert proc.returncode == 1 and "0 files, 4 skipped, 3 failed" in proc.stderr.decode()
    assert "is a directory" in one_line_error(run("encode", "photos", "-m", "tiny-rvq", cwd=work))


def test_verify_checks_without_writing(work):
    run("encode", "img.png", "-m", "tiny-rvq", cwd=work)
    good = (work / "img.vqz").read_bytes()
    (work / "bad.vqz").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    before = sorted(p.name for p in work.iterdir())
    proc = run("verify", "img.vqz", "-v", cwd=work)
    assert proc.returncode == 0 and "img.vqz: ok (30x20 RGB)" in proc.stderr.decode() and not proc.stdout
    assert "verified 1 file: all ok" in proc.stderr.decode()
    proc = run("verify", "img.vqz", "bad.vqz", cwd=work)
    assert proc.returncode == 1 and "bad.vqz: checksum mismatch" in proc.stderr.decode()
    assert "verified 1 file, 1 failed" in proc.stderr.decode()
    (work / "tree").mkdir()
    (work / "tree" / "img.vqz").write_bytes(good)
    (work / "tree" / "img.png").write_bytes((work / "img.png").read_bytes())
    proc = run("verify", "-r", "tree", cwd=work)
    assert proc.returncode == 0 and "verified 1 file, 1 skipped: all ok" in proc.stderr.decode()
    assert sorted(p.name for p in work.iterdir()) == before + ["tree"]


def test_encode_holds_images_a_few_pixels_at_a_time(work, monkeypatch):
    """`vqzip encode` of many same-size images holds and codes them in chunks of at most --batch images
    and, past the first, under api.PASS_PIXELS pixels: a camera folder is not held 64 photos at once."""
    from typer.testing import CliRunner

    from vqzip import api
    from vqzip.cli import app

    names = []
    for i in range(5):
        names.append(f"p{i}.png")
        Image.open(work / "img.png").rotate(180 * i).save(work / names[-1])
    monkeypatch.chdir(work)
    monkeypatch.setattr(api, "PASS_PIXELS", 1000)  # 20x30 images: two a chunk
    sizes, real = [], api.compress_images
    monkeypatch.setattr(api, "compress_images", lambda part, *a, **k: sizes.append(len(part)) or real(part, *a, **k))
    result = CliRunner().invoke(app, ["encode", *names, "-m", "tiny-rvq", "-q"])
    assert result.exit_code == 0, result.output
    assert sizes == [2, 2, 1] and all((work / n.replace(".png", ".vqz")).is_file() for n in names)
    sizes.clear()
    assert CliRunner().invoke(app, ["encode", *names, "-m", "tiny-rvq", "-q", "-f", "--batch", "1"]).exit_code == 0
    assert sizes == [1] * 5


def test_decode_decodes_files_together_and_names_each_refusal(work, monkeypatch):
    """`vqzip decode` of many files decodes them a chunk at a time (same-size files share network passes;
    --batch and api.PASS_PIXELS bound a chunk), and a refused file still gets its own one-line error
    while the others of its chunk are written."""
    from typer.testing import CliRunner

    from vqzip import api
    from vqzip.cli import app

    names = []
    for i in range(5):
        Image.open(work / "img.png").rotate(180 * i).save(work / f"p{i}.png")
        names.append(f"p{i}.vqz")
    monkeypatch.chdir(work)
    assert CliRunner().invoke(app, ["encode", *[n.replace(".vqz", ".png") for n in names], "-m", "tiny-rvq", "-q"]).exit_code == 0
    expected = {n: np.asarray(api.decompress((work / n).read_bytes())) for n in names}
    data = bytearray((work / "p2.vqz").read_bytes())
    data[-1] ^= 1  # checksum
    (work / "p2.vqz").write_bytes(bytes(data))
    chunks, real = [], api.decompress_images
    monkeypatch.setattr(api, "decompress_images", lambda datas, *a, **k: chunks.append(len(datas)) or real(datas, *a, **k))
    result = CliRunner().invoke(app, ["decode", *names, "-O", "out", "--batch", "3"])
    assert result.exit_code == 1 and chunks == [3, 1, 1, 1, 2]  # the refused chunk again file by file
    assert sorted(p.name for p in (work / "out").iterdir()) == ["p0.png", "p1.png", "p3.png", "p4.png"]
    for n in ("p0", "p1", "p3", "p4"):
        assert np.array_equal(np.asarray(Image.open(work / "out" / f"{n}.png")), expected[f"{n}.vqz"])
    assert "p2.vqz" in result.output and "checksum" in result.output


def test_info_and_models_as_json(work):
    import json

    run("encode", "img.png", "-m", "tiny-rvq", "-Q", "2", cwd=work)
    proc = run("info", "img.vqz", "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    [rec] = json.loads(proc.stdout)
    assert {k: rec[k] for k in ("file", "model", "width", "height", "mode", "quality", "version", "checksum")} == \
        {"file": "img.vqz", "model": "tiny-rvq", "width": 30, "height": 20, "mode": "RGB", "quality": 2, "version": 1,
         "checksum": "ok"}
    assert rec["bytes"] == (work / "img.vqz").stat().st_size == rec["payload_bytes"] + rec["overhead_bytes"]
    [rec] = json.loads(run("info", "img.vqz", "--json", cwd=work, VQZIP_MODELS=str(work / "nowhere")).stdout)
    header, _ = container.parse_header((work / "img.vqz").read_bytes())
    assert rec["model"] is None and rec["checksum"] is None and rec["model_id"] == f"{header.model_id:04x}"
    models = {m["name"]: m for m in json.loads(run("models", "--json", cwd=work).stdout)}
    assert {"tiny-rvq", "tiny-ctx", "cifar10-rvq"} <= set(models)
    shipped = models["cifar10-rvq"]
    assert shipped["qualities"] == 10 and shipped["context_prior"] and len(shipped["per_quality"]) == 10
    assert shipped["per_quality"][0]["static_bytes"] > shipped["per_quality"][0]["bytes"]


def _in_process(code: str, **env) -> str:
    """Run `code` in a fresh interpreter (the CLI via typer's runner) and return what it prints."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", "from typer.testing import CliRunner; from vqzip.cli import app; " + code],
                          capture_output=True, text=True, timeout=300, env={**environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_threads_option_reaches_the_runtime_blas_and_a_loaded_torch():
    sample = Path(__file__).resolve().parent / "data" / "sample-v1.vqz"
    show = "import os; from vqzip import runtime; print(r.exit_code, runtime._threads, os.environ['OPENBLAS_NUM_THREADS'])"
    assert _in_process(f"r = CliRunner().invoke(app, ['verify', '-j', '3', {str(sample)!r}]); {show}") == "0 3 3"
    cores = len(os.sched_getaffinity(0))
    assert _in_process(f"r = CliRunner().invoke(app, ['verify', {str(sample)!r}]); {show}") == f"0 {cores} {cores}"
    torch_first = f"import torch; r = CliRunner().invoke(app, ['verify', '-j', '3', {str(sample)!r}]); "
    assert _in_process(torch_first + "print(torch.get_num_threads())") == "3"
    assert _in_process(f"r = CliRunner().invoke(app, ['verify', {str(sample)!r}]); {show}", OMP_NUM_THREADS="1") == "0 1 1"


def test_command_help_loads_no_torch():
    for command in ("encode", "decode", "verify", "info", "models", "tokens", "detokenize"):
        out = _in_process(f"r = CliRunner().invoke(app, [{command!r}, '--help']); import sys; "
                          "print(r.exit_code, 'torch' in sys.modules, 'numpy' in sys.modules)")
        assert out == "0 False False", command


def test_info_names_the_coding_of_every_format_version() -> None:
    from vqzip.cli.codec import CODINGS
    from vqzip.coding import container

    assert set(CODINGS) == set(container.VERSIONS)
