"""The context prior: exact integer evaluation, order independence, round trips, training."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vqzip.coding.context import (
    ACT_MAX,
    BIAS_LIMIT,
    BLOCK,
    CACHED_POSITIONS,
    GROUPS,
    MAX_DIM,
    SAME_OFFSETS,
    ContextConfig,
    IntegerContext,
    bag_source,
    block_sources,
    coding_spans,
    group_map,
    level_bags,
    raster_chunk,
    same_bags,
    schedule,
)
from vqzip.coding.entropy import TokenEncoder
from vqzip.coding.priors import ContextPrior, StaticPrior
from vqzip.errors import FormatError
from vqzip.training.context_net import ContextNet
from vqzip.training.prior_training import PriorTrainConfig, train_context


def _tokens(n: int, levels: int, h: int, w: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Spatially correlated tokens (2x2 blocks of one random code), so a prior has something to learn."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, vocab, size=(n, levels, h // 2 + 1, w // 2 + 1))
    return base.repeat(2, -1).repeat(2, -2)[..., :h, :w].astype(np.int64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ContextNet, np.ndarray]:
    tokens = _tokens(128, 3, 8, 8, 20)
    cfg = PriorTrainConfig(epochs=8, batch_size=16, lr=1e-2, dim=16, warmup_steps=2)
    return train_context(tokens, 20, cfg, tmp_path_factory.mktemp("prior") / "p.ckpt"), tokens


def _reference_tables(integer: dict[str, np.ndarray], cfg: ContextConfig, tokens: np.ndarray, level: int) -> np.ndarray:
    """Every token's full K-way integer table computed with numpy int64 only: the definition the
    float32 evaluation must reproduce exactly."""
    n, _, h, w = tokens.shape
    emb = integer["embed"].astype(np.int64)
    lut = integer["lut"].astype(np.int64)

    def table(logits: np.ndarray, shift: int) -> np.ndarray:
        return lut[np.minimum((logits.max(-1, keepdims=True) - logits) >> shift, len(lut) - 1)]

    rows = []
    for chunk in [raster_chunk(h, w)]:
        positions = tokens.reshape(n, tokens.shape[1], h * w)[:, :, chunk.flat]
        columns = [(cfg.rows["column"][0] + lv * cfg.vocab + positions[:, lv]).reshape(-1, 1) for lv in range(level)]
        bags = np.concatenate([same_bags(tokens, cfg, level, chunk),
                               level_bags(tokens, cfg, level).reshape(n, h * w, -1)[:, chunk.flat].reshape(n * len(chunk), -1),
                               *columns], 1)
        h0 = np.clip(emb[bags].sum(1), 0, ACT_MAX)
        acc = h0 @ integer["w1"][level].astype(np.int64).T + integer["b1"][level]
        a1 = np.clip((acc + (1 << int(integer["shift1"][level]) >> 1)) >> int(integer["shift1"][level]), 0, ACT_MAX)
        (hs, ls) = cfg.split
        p_hi = table(a1 @ integer["whi"][level].astype(np.int64).T + integer["bhi"][level], int(integer["shifthi"][level]))
        wlo = np.broadcast_to(integer["wlo"][level].astype(np.int64), (len(a1), hs, ls, a1.shape[1]))
        lo_logits = np.einsum("nhsd,nd->nhs", wlo, a1)
        p_lo = table(lo_logits + integer["blo"][level], int(integer["shiftlo"][level]))
        p_lo[:, np.arange(hs * ls).reshape(hs, ls) >= cfg.vocab] = 1  # codes past K: the floor count
        rows.append((p_hi, p_lo, a1))
    return rows


@pytest.mark.parametrize("shape", [(8, 8), (9, 7)])
def test_float32_evaluation_equals_int64_reference(trained, shape: tuple[int, int]) -> None:
    """The decoder's path (block_hidden: context and coarser levels in one embedding bag, rows that
    do not vary within a block summed once) builds the reference tables, block by block."""
    net, _ = trained
    integer = net.to_integer()
    model = IntegerContext(net.cfg, integer)
    t = _tokens(16, 3, *shape, 20, seed=4)
    n, levels, h, w = t.shape
    for level in range(levels):
        ref_hi, ref_lo, ref_a1 = _reference_tables(integer, net.cfg, t, level)[0]
        for block in block_sources(h, w):
            a1 = model.block_hidden(bag_source(t, net.cfg, level), t, level, block)
            hi = t[:, level].reshape(n, -1)[:, block.flat] // net.cfg.split[1]
            rows = (np.arange(n)[:, None] * h * w + block.flat).ravel()  # image-major raster rows of the block
            assert np.array_equal(a1.reshape(-1, net.cfg.dim).astype(np.int64), ref_a1[rows])
            assert np.array_equal(model.hi_tables(a1, level).reshape(-1, net.cfg.split[0]), ref_hi[rows])
            lo = model.lo_tables(a1, level, hi).reshape(-1, net.cfg.split[1])
            assert np.array_equal(lo, ref_lo[rows, hi.reshape(-1)])


@pytest.mark.parametrize("shape", [(8, 8), (70, 80)])
def test_encoder_tables_equal_int64_reference(trained, shape: tuple[int, int]) -> None:
    """The encoder's path (known_gaps: whole spans, column sums kept in coding order) builds the
    reference tables too, on a grid of one span and on one of several."""
    net, _ = trained
    integer = net.to_integer()
    model = IntegerContext(net.cfg, integer)
    tokens = _tokens(2, 3, *shape, 20, seed=3)
    spans = coding_spans(*shape)
    assert (len(spans) > 1) == (shape[0] * shape[1] > BLOCK)
    seen = {level: 0 for level in range(3)}
    references = {level: _reference_tables(integer, net.cfg, tokens, level)[0] for level in range(3)}
    for level, _, hi, hi_gaps, lo, lo_gaps in model.known_gaps(tokens, 3):
        span = spans[seen[level]][0].flat
        seen[level] += 1
        ref_hi, ref_lo, _ = references[level]
        rows = (np.arange(2)[:, None] * shape[0] * shape[1] + span).ravel()  # image-major raster rows of the span
        assert np.array_equal(model.tables(hi_gaps).reshape(-1, net.cfg.split[0]), ref_hi[rows])
        assert np.array_equal(model.tables(lo_gaps).reshape(-1, net.cfg.split[1]), ref_lo[rows, hi.ravel()])
        assert np.array_equal(hi * net.cfg.split[1] + lo, tokens[:, level].reshape(2, -1)[:, span])
    assert seen == {level: len(spans) for level in range(3)}


def test_group_pattern_covers_and_orders() -> None:
    g = group_map(9, 7)
    assert set(np.unique(g)) == set(range(GROUPS))
    flat = np.concatenate([c.flat for c in schedule(9, 7)])
    assert sorted(flat) == list(range(63))  # every position exactly once
    assert all(len(set(g.ravel()[c.flat])) == 1 for c in schedule(9, 7))  # one group per block
    big = schedule(160, 130)  # groups of more than BLOCK positions are cut into blocks
    assert max(len(c) for c in big) == BLOCK and sum(len(c) for c in big) == 160 * 130
    assert len(SAME_OFFSETS) == 16


@pytest.mark.parametrize("shape", [(1, 1), (9, 7), (12, 16)])
def test_known_neighbours_are_those_of_earlier_groups(shape: tuple[int, int]) -> None:
    """A position sees a same-level neighbour exactly when it lies inside the grid and its group is
    decoded first (part of the format: the encoder and decoder both use this mask)."""
    h, w = shape
    g, chunk = group_map(h, w), raster_chunk(h, w)
    for p in range(h * w):
        i, j = divmod(p, w)
        for o, (di, dj) in enumerate(SAME_OFFSETS):
            inside = 0 <= i + di < h and 0 <= j + dj < w
            assert bool(chunk.known[p, o]) == (inside and g[i + di, j + dj] < g[i, j])
            if inside:
                assert int(chunk.neighbours[p, o]) == (i + di + 2) * (w + 4) + j + dj + 2


def test_only_small_grids_stay_cached() -> None:
    """Coding orders and context indices are kept for small grids (met again and again); a large
    grid's (hundreds of MB for a 24-megapixel photo) are rebuilt, not kept for the process's life."""
    side = int(CACHED_POSITIONS ** 0.5)
    assert schedule(side, side) is schedule(side, side)
    assert block_sources(side + 1, side) is not block_sources(side + 1, side)


def test_decoder_refuses_codes_past_the_vocabulary(trained) -> None:
    """Codes past K (20 of 3 x 8 here) keep the floor count 1, so a damaged payload can hold one:
    decoding stops with a FormatError before the code reaches a context lookup."""
    net, _ = trained
    prior = ContextPrior(net.cfg, net.to_integer())
    t = np.zeros((1, 1, 1, 1), np.int64)
    a1 = prior.model.block_hidden(bag_source(t, net.cfg, 0), t, 0, block_sources(1, 1)[0])
    hi, coder = np.array([[2]]), TokenEncoder()
    coder.encode(hi[0], prior.model.hi_tables(a1, 0)[0])
    coder.encode(np.array([7]), prior.model.lo_tables(a1, 0, hi)[0])  # code 2 * 8 + 7 = 23 >= 20
    with pytest.raises(FormatError, match="vocabulary"):
        prior.decode([coder.finish()], 1, 1, 1)


@pytest.mark.parametrize("shape", [(8, 8), (9, 7), (160, 130)])
def test_spans_join_blocks_in_coding_order(shape: tuple[int, int]) -> None:
    """The encoder's spans are the decoder's blocks, one after another, at most BLOCK positions each."""
    blocks, spans = schedule(*shape), coding_spans(*shape)
    assert [n for _, lengths in spans for n in lengths] == [len(b) for b in blocks]
    for name in ("flat", "neighbours", "known"):
        joined = np.concatenate([getattr(span, name) for span, _ in spans])
        assert np.array_equal(joined, np.concatenate([getattr(b, name) for b in blocks]))
    assert all(len(span) == sum(lengths) <= BLOCK for span, lengths in spans)
    if shape[0] * shape[1] <= BLOCK:
        assert len(spans) == 1  # a small grid's level is coded in one step, not one per group


def test_learns_and_integer_model_matches_float(trained) -> None:
    net, tokens = trained
    static = StaticPrior.fit(tokens, [20] * 3).level_bits(tokens).sum()
    prior = ContextPrior(net.cfg, net.to_integer())
    context = prior.level_bits(tokens).sum()
    with torch.no_grad():
        float_bits = float(net.loss_bits(torch.from_numpy(tokens))) * tokens.size
    assert context < 0.8 * static  # correlated tokens: the context must pay off
    assert abs(context - float_bits) < 0.02 * float_bits  # fake quantization trains the integer model


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (8, 8), (3, 12), (100, 170)])
def test_round_trip_any_grid(trained, shape: tuple[int, int]) -> None:
    net, _ = trained
    prior = ContextPrior(net.cfg, net.to_integer())
    tokens = _tokens(3, 3, max(shape[0], 2), max(shape[1], 2), 20, seed=1)[:, :, : shape[0], : shape[1]]
    for levels in (1, 3):
        encoded = prior.encode(tokens[:, :levels])
        back = prior.decode([p for p, _ in encoded], levels, *shape)
        assert np.array_equal(back, tokens[:, :levels])
        for (payload, bits) in encoded:  # real size within the coder's few bytes of the ideal
            assert len(payload) <= bits / 8 + 8


def test_vocab_not_a_power_of_two(trained) -> None:
    net, tokens = trained
    assert net.cfg.split == (3, 8)  # 20 codes -> 3 x 8, of which codes 20..23 never occur
    prior = ContextPrior(net.cfg, net.to_integer())
    codes = np.full((1, 3, 4, 4), 19)
    assert np.array_equal(prior.decode([prior.encode(codes)[0][0]], 3, 4, 4), codes)
    with pytest.raises(ValueError, match="vocabulary"):  # refused, not looked up past the embedding's blocks
        prior.encode(codes + 1)


def test_independent_of_batch_threads_and_chunking(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encode a batch of 1, and in a process whose BLAS runs on one thread; decode a batch of 64 and
    small chunks: the same bytes and tokens every way."""
    import vqzip.coding.priors as priors

    net, tokens = trained
    prior = ContextPrior(net.cfg, net.to_integer())
    one_by_one = [prior.encode(tokens[i: i + 1])[0][0] for i in range(64)]
    assert [p for p, _ in prior.encode(tokens[:64])] == one_by_one
    np.savez(tmp_path / "prior.npz", tokens=tokens[:64], **net.to_integer())
    code = ("import sys, numpy as np; from vqzip.coding.priors import ContextPrior; "
            f"d = dict(np.load(sys.argv[1])); t = d.pop('tokens'); p = ContextPrior({net.cfg.to_dict()}, d); "
            "sys.stdout.buffer.write(b''.join(b for b, _ in p.encode(t)))")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "prior.npz")], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"".join(one_by_one)
    monkeypatch.setattr(priors, "PENDING_ENTRIES", 1)  # the coder called for every level, not once
    assert [p for p, _ in prior.encode(tokens[:64])] == one_by_one
    monkeypatch.setattr(priors, "MAX_ROWS", 64)  # a few images at a time
    assert np.array_equal(prior.decode(one_by_one, 3, 8, 8), tokens[:64])


def test_coding_in_pieces_changes_no_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """With high and low parts of equal width (K = 16: 4 x 4), the coder takes runs across blocks and
    levels; cutting them into pieces of any size, or into one image at a time, gives the same bytes."""
    import vqzip.coding.priors as priors

    cfg = ContextConfig(levels=2, vocab=16, dim=8)
    assert cfg.split == (4, 4)
    torch.manual_seed(0)
    prior = ContextPrior(cfg, ContextNet(cfg).to_integer())
    tokens = _tokens(5, 2, 30, 20, 16, seed=2)
    whole = prior.encode(tokens)
    monkeypatch.setattr(priors, "TABLE_ENTRIES", 1)  # every part its own piece, one image at a time
    assert [p for p, _ in prior.encode(tokens)] == [p for p, _ in whole]
    assert np.allclose([b for _, b in prior.encode(tokens)], [b for _, b in whole])
    assert np.array_equal(prior.decode([p for p, _ in whole], 2, 30, 20), tokens)


def test_rejects_inexact_tensors(trained) -> None:
    net, _ = trained
    integer = net.to_integer()
    bad = dict(integer, w1=integer["w1"].astype(np.int32) * 4)  # outside int8: the bound no longer holds
    with pytest.raises(ValueError, match="exact"):
        IntegerContext(net.cfg, bad)
    with pytest.raises(ValueError, match="exact"):  # not integers: int8 would drop the fraction
        IntegerContext(net.cfg, dict(integer, embed=integer["embed"] + 0.5))
    with pytest.raises(ValueError, match="exact"):  # a bias past the bound the exact range assumes
        IntegerContext(net.cfg, dict(integer, blo=integer["blo"] + 2 * BIAS_LIMIT))
    with pytest.raises(ValueError, match="shape"):
        IntegerContext(net.cfg, dict(integer, whi=integer["whi"][:, :1]))


def test_resume_continues_exactly(tmp_path: Path) -> None:
    tokens = _tokens(64, 2, 4, 4, 8)
    cfg = PriorTrainConfig(epochs=2, batch_size=32, dim=8, warmup_steps=1)
    straight = train_context(tokens, 8, cfg, tmp_path / "a.ckpt")
    train_context(tokens, 8, PriorTrainConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "b.ckpt")
    resumed = train_context(tokens, 8, cfg, tmp_path / "b.ckpt", resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_widest_prior_is_exact_and_wider_is_refused() -> None:
    """MAX_DIM is the widest network IntegerContext accepts; a wider config is refused up front."""
    cfg = ContextConfig(levels=1, vocab=4, dim=MAX_DIM)
    IntegerContext(cfg, ContextNet(cfg).to_integer())
    with pytest.raises(ValueError, match="not be exact"):
        ContextConfig(levels=1, vocab=4, dim=MAX_DIM + 1)
