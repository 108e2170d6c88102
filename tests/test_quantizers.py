"""Contract tests for every registered quantizer: shapes, gradients, token round trips, usage stats."""
from __future__ import annotations

import pytest
import torch

from vqzip.codec.quantizers import REGISTRY, build_quantizer
from vqzip.codec.quantizers.fsq import FSQ
from vqzip.codec.quantizers.vq import VQ

D = 8
# small settings for every registry entry; byte at every alphabet size it must support
CASES = [
    ("vq", {"codebook_size": 16}),
    ("vq", {"codebook_size": 16, "ema": False}),
    ("rvq", {"levels": 3, "codebook_size": 16}),
    ("byte", {"levels": 256}),
    ("byte", {"levels": 512}),
    ("byte", {"levels": 32}),
    ("byte", {"levels": 8}),
    ("byte", {"levels": 8, "channels": 2}),
    ("simvq", {"codebook_size": 32}),
    ("fsq", {"levels": (4, 3, 3)}),
    ("lfq", {"bits": 4}),
    ("lfq", {"bits": 4, "entropy_weight": 0.1}),
    ("identity", {}),
]
IDS = [f"{n}-" + "-".join(f"{k}{v}" for k, v in kw.items()) for n, kw in CASES]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _latent(b: int = 2, h: int = 4, w: int = 4) -> torch.Tensor:
    return torch.randn(b, D, h, w)


def test_cases_cover_registry() -> None:
    assert {name for name, _ in CASES} == set(REGISTRY)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_output_contract(name: str, kwargs: dict) -> None:
    """Shapes and dtypes, token range, scalar finite loss, utilisation in (0, 1], in train and eval mode."""
    q = build_quantizer(name, D, **kwargs)
    assert q.dim == D and q.num_levels == len(q.vocab_sizes) >= 1
    assert q.progressive == (name == "rvq")
    z = _latent()
    for training in (True, False):
        q.train(training)
        out = q(z)
        assert out.z_q.shape == z.shape and out.z_q.dtype == z.dtype
        b, levels, h, w = out.tokens.shape
        assert (b, h, w) == (2, 4, 4) and out.tokens.dtype == torch.int64
        assert 1 <= levels <= q.num_levels and (levels == q.num_levels or training)
        for lvl in range(levels):
            assert 0 <= int(out.tokens[:, lvl].min()) and int(out.tokens[:, lvl].max()) < q.vocab_sizes[lvl]
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert 0 < out.stats["utilisation"] <= 1 and out.stats["perplexity"] >= 1


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_gradient_reaches_latent(name: str, kwargs: dict) -> None:
    """Straight-through: the encoder gets a gradient from z_q."""
    q = build_quantizer(name, D, **kwargs).train()
    z = _latent().requires_grad_()
    q(z).z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_dequantize_matches_forward(name: str, kwargs: dict) -> None:
    """What the decoder sees in training (z_q) is what it gets from the tokens at decode time."""
    q = build_quantizer(name, D, **kwargs)
    z = _latent()
    q.train()(z)  # k-means init for the VQ family
    q.eval()
    tokens = q.tokens(z)
    with torch.no_grad():
        z_q = q(z).z_q
        decoded = q.dequantize(tokens)
    torch.testing.assert_close(decoded, z_q, rtol=1e-5, atol=1e-6)
    if name in ("byte", "fsq", "identity"):  # integer grids and the bit pattern: straight-through adds no rounding error at all
        assert torch.equal(decoded, z_q)


@pytest.mark.parametrize("levels", [256, 512, 32, 8])
def test_byte_range_is_fixed(levels: int) -> None:
    """Saturated latents land on 0 and K-1 and never outside: the range needs no per-image side info."""
    q = build_quantizer("byte", D, levels=levels).eval()
    tokens = q.tokens(_latent(b=4) * 1e3)
    assert int(tokens.min()) == 0 and int(tokens.max()) == levels - 1
    assert q.vocab_sizes == [levels]


def test_byte_has_no_aux_loss() -> None:
    out = build_quantizer("byte", D).train()(_latent())
    assert out.loss.item() == 0.0


def test_simvq_trains_only_the_map() -> None:
    """The code matrix C is a frozen buffer; the loss reaches only W."""
    q = build_quantizer("simvq", D, codebook_size=32).train()
    assert [n for n, _ in q.named_parameters()] == ["proj.weight"]
    assert "codes" in dict(q.named_buffers())
    q(_latent()).loss.backward()
    assert q.proj.weight.grad is not None and q.proj.weight.grad.abs().sum() > 0


def test_fsq_levels_per_channel() -> None:
    """Bounding gives exactly L_i rounded values per channel, odd and even L alike (half-step offset)."""
    q = FSQ(D, levels=(4, 3, 2, 5))
    x = torch.linspace(-20, 20, 2001).view(1, 1, -1, 1).expand(1, 4, -1, 1)
    rounded = q._bound(x).round()
    assert [rounded[0, i].unique().numel() for i in range(4)] == [4, 3, 2, 5]
    assert q.vocab_sizes == [4 * 3 * 2 * 5]
    tokens = torch.arange(120).view(1, 1, 120, 1)  # every token decodes to a distinct latent
    assert q.dequantize(tokens)[0, :, :, 0].t().unique(dim=0).shape[0] == 120


def test_lfq_tokens_spell_the_sign_bits() -> None:
    q = build_quantizer("lfq", D, bits=4).eval()
    z = _latent()
    bits = (q.proj_in(z) > 0).long()
    expected = sum(bits[:, i] << i for i in range(4)).unsqueeze(1)
    assert torch.equal(q.tokens(z), expected)


def test_rvq_prefixes_decode_and_refine() -> None:
    """Any prefix of the levels decodes; on average each extra level lowers the error."""
    q = build_quantizer("rvq", D, levels=3, codebook_size=16)
    z = _latent(b=4)
    q.train()(z, 3)  # k-means init of every stage on its residual
    q.eval()
    tokens = q.tokens(z)
    assert tokens.shape == (4, 3, 4, 4)
    errors = []
    for k in range(1, 4):
        with torch.no_grad():
            out = q(z, k)
            decoded = q.dequantize(tokens[:, :k])
        assert out.tokens.shape == (4, k, 4, 4) and torch.equal(out.tokens, tokens[:, :k])
        torch.testing.assert_close(decoded, out.z_q, rtol=1e-5, atol=1e-6)
        errors.append((decoded - z).pow(2).mean().item())
    assert errors[0] > errors[1] > errors[2]


def test_rvq_per_sample_levels() -> None:
    """A (B,) tensor of levels uses each sample's prefix only (quantizer dropout)."""
    q = build_quantizer("rvq", D, levels=3, codebook_size=16)
    z = _latent(b=3)
    q.train()(z, 3)
    q.eval()
    with torch.no_grad():
        out = q(z, torch.tensor([1, 2, 3]))
        for i, k in enumerate((1, 2, 3)):
            torch.testing.assert_close(out.z_q[i : i + 1], q.dequantize(out.tokens[i : i + 1, :k]), rtol=1e-5, atol=1e-6)
        assert q(z, torch.tensor(2)).tokens.shape == (3, 2, 4, 4)  # a 0-d tensor means all samples
        assert q(z, 5).tokens.shape == (3, 3, 4, 4)  # more levels than exist: all of them


@pytest.mark.parametrize("ema", [True, False])
def test_vq_restart_revives_dead_codes(ema: bool) -> None:
    """A codebook far from the data collapses onto one code; dead-code restart brings the rest back."""
    q = VQ(D, codebook_size=16, ema=ema, kmeans_init=False, restart_after=3).train()
    far = torch.randn(16, D) + 100.0
    q.codebook.data.copy_(far)
    q.ema_sum.copy_(far)
    z = _latent(b=2, h=8, w=8)
    used = [q(z).stats["utilisation"] for _ in range(8)]
    assert used[0] <= 2 / 16  # before any restart: (nearly) everything maps to one far code
    assert min(used[3:]) >= 0.5  # after restart_after steps the idle codes sit on the data
    # by now the code everything first collapsed onto has idled out and been restarted too
    assert (q.codebook - z.mean((0, 2, 3))).norm(dim=1).max() < 10


def test_vq_kmeans_init_uses_the_codebook() -> None:
    """k-means on the first training batch replaces even a hopeless initial codebook."""
    q = VQ(D, codebook_size=16, restart_after=0).train()
    q.codebook.data.add_(100.0)
    q.ema_sum.add_(100.0)
    z = _latent(b=2, h=8, w=8)
    assert q(z).stats["utilisation"] >= 0.75
    assert bool(q.initialised)
    with torch.no_grad():
        assert q.eval()(z).stats["utilisation"] >= 0.75


def test_nearest_is_the_exact_argmin_with_first_index_ties() -> None:
    """The CPU fast path (numpy's argmin) picks what torch's argmin picks, ties included."""
    from vqzip.codec.quantizers.vq import nearest

    codebook = torch.randn(64, 8)
    codebook[10] = codebook[3]  # equal rows: every distance ties, the first index must win
    x = torch.cat([torch.randn(500, 8), codebook[3:4].repeat(4, 1)])
    expected = (torch.cdist(x, codebook) ** 2).argmin(1)
    got = nearest(x, codebook)
    assert got.dtype == torch.int64
    assert (got[-4:] == 3).all()
    distance = torch.addmm(codebook.pow(2).sum(1), x, codebook.t(), alpha=-2)
    assert torch.equal(got, distance.argmin(1))
    assert (got == expected).float().mean() > 0.99  # cdist rounds differently only on near-ties
