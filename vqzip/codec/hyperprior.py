"""A rate-distortion photo codec: GDN transforms, scalar latents, a mean-scale hyperprior, and
per-quality gain vectors so one model serves every quality (Cui et al. 2021).

    x --g_a--> y --*gain[q]--> y_g --h_a--> z --round--> z_hat  (coded under a factorized density)
    z_hat --h_s--> (mean, log2 scale) per latent;  y_hat = round(y_g): the tokens, coded under
    Gaussians of that mean and scale;  y_hat * inv_gain[q] --g_s--> x_hat

Training pays rate + lambda[q] * 255^2 * MSE. The hyper-synthesis h_s is the only network whose output
the entropy coder depends on; `coding.gaussian` evaluates it in exact integer arithmetic.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PhotoConfig

LOG2_SCALE_MIN = -3.25  # smallest Gaussian scale, 2^-3.25 = 0.105
LOG2_SCALE_MAX = 8.0  # largest, 256
LIKELIHOOD_MIN = 1e-9


class GDN(nn.Module):
    """Simplified generalized divisive normalization (Johnston et al. 2019): x / (beta + gamma |x|),
    or its inverse x * (beta + gamma |x|). No square root, so it stays cheap and stable in bfloat16."""

    def __init__(self, ch: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(0.1 * torch.eye(ch))

    def forward(self, x: Tensor) -> Tensor:
        beta = self.beta.abs() + 1e-4  # kept positive: the divisor never reaches 0
        gamma = self.gamma.abs()
        norm = F.conv2d(x.abs(), gamma[:, :, None, None].to(x.dtype), beta.to(x.dtype))
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


class Upsample(nn.Module):
    """3x3 convolution to 4x the channels, then a pixel shuffle: a 2x upsampling built from a plain
    convolution, which the integer evaluator reproduces exactly (no transposed convolution)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class ResidualBlock(nn.Module):
    """x + 3x3(LeakyReLU(3x3(x))), the second convolution zero at first: a block added to a trained
    transform changes nothing until trained, and makes it deeper (the residual blocks of Cheng et
    al. 2020, added as Net2DeeperNet adds layers)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        assert self.conv2.bias is not None
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x)))


def _through(layers: nn.Sequential, blocks: nn.ModuleDict, x: Tensor) -> Tensor:
    """`layers` in order, each followed by the residual blocks `blocks` holds under its index."""
    for i, layer in enumerate(layers):
        x = layer(x)
        if str(i) in blocks:
            x = blocks[str(i)](x)
    return x


class HyperSynthesis(nn.Module):
    """z_hat -> (mean, log2 scale) of every latent, 4x finer. Layers are exactly what
    coding.gaussian.IntegerHyperSynthesis evaluates with integers: Upsample, ReLU, Upsample, ReLU, 3x3."""

    def __init__(self, hyper: int, channels: int, latent: int) -> None:
        super().__init__()
        self.up1 = Upsample(hyper, channels)
        self.up2 = Upsample(channels, channels * 3 // 2)
        self.out = nn.Conv2d(channels * 3 // 2, 2 * latent, 3, padding=1)

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.up2(F.relu(self.up1(z_hat))))
        mean, log_scale = self.out(h).chunk(2, 1)
        return mean, log_scale


CONTEXT_TOKEN_LIMIT = 4096  # tokens enter a slice's context clamped to +-this (the integer range needs a bound)


def anchor_mask(h: int, w: int) -> Tensor:
    """1 at a checkerboard's anchors ((row + column) even: coded first), 0 at the other half (coded
    second, its four neighbours known): (1, 1, h, w)."""
    return ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).float()[None, None]


def _context_net(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """3x3, ReLU, 3x3 whose last layer starts at zero: a new context changes nothing until trained."""
    out = nn.Conv2d(hidden, cout, 3, padding=1)
    nn.init.zeros_(out.weight)
    assert out.bias is not None
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(), out)


class SliceContext(nn.Module):
    """Channel-conditional entropy model (Minnen & Singh 2020): the latent's channels form `slices`
    groups coded one after another; the mean and log2 scale of group s are h_s's plus a correction
    from a small network that sees the tokens of groups 0..s-1 and h_s's own mean and scale of group s.
    With `checkerboard` (He et al. 2021), each group is coded in two halves, anchors then the rest, and
    a second network corrects the rest's parameters from the group's anchor tokens (their four
    neighbours). Every correction starts at zero (last layers zero), so a model gains slices or the
    checkerboard without changing what it codes. Layers are what coding.gaussian.IntegerConvStack
    evaluates: 3x3, ReLU, 3x3."""

    def __init__(self, latent: int, slices: int, hidden: int, checkerboard: bool = False) -> None:
        super().__init__()
        self.slices, self.width = slices, latent // slices
        self.nets = nn.ModuleList([_context_net((s + 2) * self.width, hidden, 2 * self.width) for s in range(1, slices)])
        self.spatial = nn.ModuleList([_context_net(3 * self.width, hidden, 2 * self.width)
                                      for _ in range(slices if checkerboard else 0)])

    def forward(self, y_hat: Tensor, mean: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log2 scale of every latent from h_s's (mean, log_scale) and the tokens y_hat."""
        if self.slices == 1 and not self.spatial:
            return mean, log_scale
        w = self.width
        tokens = y_hat.clamp(-CONTEXT_TOKEN_LIMIT, CONTEXT_TOKEN_LIMIT)
        anchors = anchor_mask(*y_hat.shape[2:]).to(tokens) if self.spatial else None
        means, scales = [], []
        for s in range(self.slices):
            m, ls = self._from_before(s, tokens[:, : s * w], mean[:, s * w: (s + 1) * w], log_scale[:, s * w: (s + 1) * w])
            if anchors is not None:
                m, ls = self._from_anchors(s, tokens[:, s * w: (s + 1) * w], m, ls, anchors)
            means.append(m)
            scales.append(ls)
        return torch.cat(means, 1), torch.cat(scales, 1)

    def shifted(self, y: Tensor, mean: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean-shifted rounding as format version 9 codes it (coding.gaussian.HyperpriorCoder.with_mean_shift),
        for training: slice by slice and half by half, y_hat = round(y - mean) + mean (straight through),
        each group's means from the latents rounded before it. Returns y_hat and every latent's mean and
        log2 scale."""
        w = self.width
        anchors = anchor_mask(*y.shape[2:]).to(y) if self.spatial else None
        done: list[Tensor] = []
        means, scales = [], []
        for s in range(self.slices):
            before = torch.cat(done, 1).clamp(-CONTEXT_TOKEN_LIMIT, CONTEXT_TOKEN_LIMIT) if done else y[:, :0]
            m, ls = self._from_before(s, before, mean[:, s * w: (s + 1) * w], log_scale[:, s * w: (s + 1) * w])
            part = y[:, s * w: (s + 1) * w]
            y_hat = ste_round(part - m) + m
            if anchors is not None:
                m, ls = self._from_anchors(s, y_hat.clamp(-CONTEXT_TOKEN_LIMIT, CONTEXT_TOKEN_LIMIT), m, ls, anchors)
                y_hat = torch.where(anchors.bool(), y_hat, ste_round(part - m) + m)
            done.append(y_hat)
            means.append(m)
            scales.append(ls)
        return torch.cat(done, 1), torch.cat(means, 1), torch.cat(scales, 1)

    def _from_before(self, s: int, before: Tensor, m: Tensor, ls: Tensor) -> tuple[Tensor, Tensor]:
        """Slice s's (mean, log scale) corrected from the (clamped) latents of the slices before it."""
        if s == 0:
            return m, ls
        dm, dls = self.nets[s - 1](torch.cat([before, m, ls], 1)).chunk(2, 1)
        return m + dm, ls + dls

    def _from_anchors(self, s: int, part: Tensor, m: Tensor, ls: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor]:
        """Slice s's non-anchors' (mean, log scale) corrected from its anchors' (clamped) latents."""
        dm, dls = self.spatial[s](torch.cat([part * anchors, m, ls], 1)).chunk(2, 1)
        return m + dm * (1 - anchors), ls + dls * (1 - anchors)


class FactorizedDensity(nn.Module):
    """A learned density per channel for the hyper latent z (Balle et al. 2018, appendix 6.1): a
    monotone cumulative function c(x) per channel, p(z) = c(z + 1/2) - c(z - 1/2). Its integer tables
    are evaluated once, at export, and stored."""

    def __init__(self, ch: int, filters: tuple[int, ...] = (3, 3, 3)) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        init = 10.0 ** (1 / len(dims[:-1]))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            self.matrices.append(nn.Parameter(torch.full((ch, b, a), math.log(math.expm1(1 / init / b)))))
            self.biases.append(nn.Parameter(torch.rand(ch, b, 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(ch, b, 1)))

    def logits_cdf(self, x: Tensor) -> Tensor:
        """x: (C, 1, n) -> cumulative logits (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: Tensor) -> Tensor:
        """p(z) of (B, C, h, w) values (integers, or integers plus uniform noise)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lo, hi = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lo + hi).detach()  # compute in the tail where sigmoid is accurate
        p = (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()
        return p.clamp_min(LIKELIHOOD_MIN).reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def pmf(self, support: int) -> Tensor:
        """Probabilities (C, 2 * support + 1) of the integers -support..support, the two ends taking
        the tails (the encoder clamps z to that range)."""
        c = self.matrices[0].shape[0]
        v = torch.arange(-support, support + 1, dtype=torch.float32).expand(c, 1, -1)
        cdf = torch.sigmoid(self.logits_cdf(torch.cat([v - 0.5, v[..., -1:] + 0.5], -1)))[:, 0]
        cdf[:, 0], cdf[:, -1] = 0.0, 1.0
        return (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0)


def gaussian_likelihood(v: Tensor, scale: Tensor) -> Tensor:
    """P(round(y - mean) = v) for a Gaussian of `scale`, v = y - mean (noisy in training)."""
    v = v.abs()
    upper = torch.special.ndtr((0.5 - v) / scale)
    lower = torch.special.ndtr((-0.5 - v) / scale)
    return (upper - lower).clamp_min(LIKELIHOOD_MIN)


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 / AMX): there `--effort`'s
    gradient steps run about twice as fast in bfloat16; elsewhere bfloat16 would be emulated, and
    slower. VQZIP_FLOAT32=1 turns it off. (Coding itself runs the float32 graphs of codec.graphs.)"""
    if os.environ.get("VQZIP_FLOAT32") == "1":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def inference_precision() -> Any:
    """The autocast context `refine_latents` runs the synthesis under (bfloat16 where it is native)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16())


def ste_round(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


class PhotoCodec(nn.Module):
    """The codec's networks. Analysis and synthesis have four 5x5 layers each; the first `downsamples`
    of the analysis halve the resolution (the last ones of the synthesis double it) and the rest keep
    it, so a small-image model (stride 8) has the photo model's depth at a finer token grid."""

    def __init__(self, config: PhotoConfig) -> None:
        super().__init__()
        self.config = config
        n, m, nz, q = config.channels, config.latent, config.hyper, config.qualities
        s = [2 if i < config.downsamples else 1 for i in range(4)]
        self.g_a = nn.Sequential(_conv(3, n, stride=s[0]), GDN(n), _conv(n, n, stride=s[1]), GDN(n),
                                 _conv(n, n, stride=s[2]), GDN(n), _conv(n, m, stride=s[3]))
        self.g_s = nn.Sequential(_deconv(m, n, stride=s[3]), GDN(n, True), _deconv(n, n, stride=s[2]), GDN(n, True),
                                 _deconv(n, n, stride=s[1]), GDN(n, True), _deconv(n, 3, stride=s[0]))
        # --residual: blocks after the analysis' 2nd and 3rd GDN and the synthesis' 1st and 2nd inverse
        # GDN (the middle resolutions, where they cost least per channel)
        self.g_a_blocks = nn.ModuleDict({str(i): nn.Sequential(*(ResidualBlock(n) for _ in range(config.residual)))
                                         for i in (3, 5) if config.residual})
        self.g_s_blocks = nn.ModuleDict({str(i): nn.Sequential(*(ResidualBlock(n) for _ in range(config.residual)))
                                         for i in (1, 3) if config.residual})
        self.h_a = nn.Sequential(_conv(m, n, 3, 1), nn.LeakyReLU(), _conv(n, n), nn.LeakyReLU(), _conv(n, nz))
        self.h_s = HyperSynthesis(nz, n, m)
        self.context = SliceContext(m, config.slices, config.context, config.checkerboard)
        self.z_density = FactorizedDensity(nz)
        # per-quality gains on the latent (log domain), initialised so rates are spread apart
        spread = torch.linspace(-1.5, 1.5, q)[:, None].expand(q, m).clone()
        self.log_gain = nn.Parameter(spread)
        self.log_inv_gain = nn.Parameter(-spread)

    @property
    def qualities(self) -> int:
        return self.config.qualities

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def latent_stride(self) -> int:
        return self.config.latent_stride

    def analysis(self, x: Tensor, q: Tensor) -> Tensor:
        """x in [-0.5, 0.5] (B, 3, H, W), H and W multiples of the latent stride -> gained latent y_g."""
        return _through(self.g_a, self.g_a_blocks, x) * self.log_gain[q].exp()[:, :, None, None]

    def synthesis(self, y_hat: Tensor, q: Tensor) -> Tensor:
        return _through(self.g_s, self.g_s_blocks, y_hat * self.log_inv_gain[q].exp()[:, :, None, None])

    def entropy_params(self, z_hat: Tensor, y_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and scale of every token's Gaussian: h_s of the side tokens, corrected slice by slice
        from the tokens before (SliceContext)."""
        mean, log_scale = self.context(y_hat, *self.h_s(z_hat))
        return mean, torch.exp2(log_scale.clamp(LOG2_SCALE_MIN, LOG2_SCALE_MAX))

    def rounded(self, y: Tensor, z_hat: Tensor, mean_shift: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """y's latents rounded (straight through) and every latent's mean and scale: round(y), or with
        `mean_shift` round(y - mean) + mean group by group, as format version 9 codes (SliceContext.shifted)."""
        if not mean_shift:
            y_hat = ste_round(y)
            return (y_hat, *self.entropy_params(z_hat, y_hat))
        y_hat, mean, log_scale = self.context.shifted(y, *self.h_s(z_hat))
        return y_hat, mean, torch.exp2(log_scale.clamp(LOG2_SCALE_MIN, LOG2_SCALE_MAX))

    def forward(self, x: Tensor, q: Tensor, mean_shift: bool = False) -> dict[str, Tensor]:
        """Training pass: x (B, 3, H, W) in [-0.5, 0.5], q (B,) quality indices 0..Q-1. Returns the
        reconstruction and the bits of each image (y and z; y's also per latent channel, (B, M)), for
        rate + lambda * distortion. `mean_shift`: the synthesis and contexts see round(y - mean) + mean,
        as format version 9 codes (SliceContext.shifted), instead of round(y)."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=x.device.type == "cpu" and native_bf16()):
            y = self.analysis(x, q)
            z = self.h_a(y)
        y, z = y.float(), z.float()
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_bits = -torch.log2(self.z_density.likelihood(z_noisy)).sum((1, 2, 3))
        y_hat, mean, scale = self.rounded(y, ste_round(z), mean_shift)
        noise = torch.empty_like(y).uniform_(-0.5, 0.5)
        y_channel_bits = -torch.log2(gaussian_likelihood(y - mean + noise, scale)).sum((2, 3))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=x.device.type == "cpu" and native_bf16()):
            x_hat = self.synthesis(y_hat, q)
        return {"x_hat": x_hat.float(), "y_bits": y_channel_bits.sum(1), "y_channel_bits": y_channel_bits,
                "z_bits": z_bits}


def coded_cost(model: PhotoCodec, x: Tensor, q: Tensor, y: Tensor, z: Tensor,
               mean_shift: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """Per image: rate + lambda[q] * 255^2 * MSE of the rounded latents y, z as they will be coded
    (straight-through, so it has gradients), and the terms refine_latents reuses. `mean_shift`: y
    rounded as round(y - mean) + mean, as format version 9 codes it (SliceContext.shifted)."""
    z_hat = ste_round(z)
    y_hat, mean, scale = model.rounded(y, z_hat, mean_shift)
    z_bits = -torch.log2(model.z_density.likelihood(z_hat)).sum((1, 2, 3))
    y_bits = -torch.log2(gaussian_likelihood(y_hat - mean, scale)).sum((1, 2, 3))
    with inference_precision():
        x_hat = model.synthesis(y_hat, q).float()
    distortion = torch.tensor(model.config.lambdas)[q] * 255**2 * (x_hat - x).pow(2).mean((1, 2, 3))
    pixels = x.shape[2] * x.shape[3]
    return (y_bits + z_bits) / pixels + distortion, {"mean": mean, "scale": scale, "z_bits": z_bits,
                                                     "distortion": distortion}


def refine_latents(model: PhotoCodec, x: Tensor, q: Tensor, y: Tensor, z: Tensor, steps: int,
                   lr: float = 0.003, seed: int = 0, mean_shift: bool = False) -> tuple[Tensor, Tensor]:
    """Encoder-side search (after Yang, Bamler & Mandt 2020): `steps` Adam steps on the latents y, z of
    images x (gained, as analysis and h_a give them) to lower this very image's coded_cost through the
    fixed decoder and entropy model; the decoder and format are unchanged.

    The gradient comes from training's relaxation (y's rate with uniform noise, seeded so an encode
    is repeatable; distortion through straight-through rounding): the straight-through gradient of
    the rounded rate is biased and made the true cost rise after a few steps. Each image keeps its
    best iterate by coded_cost, so refining never costs more than not (in the float model's bits).
    `mean_shift`: price y as format version 9 codes it (see coded_cost)."""
    noise = torch.Generator().manual_seed(seed)
    y, z = y.detach().clone().requires_grad_(True), z.detach().clone().requires_grad_(True)
    best_y, best_z = y.detach().clone(), z.detach().clone()
    best = torch.full((len(y),), float("inf"))
    opt = torch.optim.Adam([y, z], lr=lr)
    pixels = x.shape[2] * x.shape[3]
    with torch.enable_grad():
        for step in range(steps + 1):
            cost, t = coded_cost(model, x, q, y, z, mean_shift)
            better = cost.detach() < best
            best = torch.where(better, cost.detach(), best)
            best_y[better], best_z[better] = y.detach()[better], z.detach()[better]
            if step == steps:
                break
            noisy = y + torch.rand(y.shape, generator=noise) - 0.5
            relaxed_bits = -torch.log2(gaussian_likelihood(noisy - t["mean"], t["scale"])).sum((1, 2, 3)) + t["z_bits"]
            opt.zero_grad(set_to_none=True)
            (relaxed_bits / pixels + t["distortion"]).sum().backward()
            opt.step()
    return best_y, best_z


def gains_for_lambdas(state: dict[str, Tensor], old: tuple[float, ...], new: tuple[float, ...]) -> dict[str, Tensor]:
    """`state` (a PhotoCodec's weights trained for lambdas `old`) with gain vectors for lambdas `new`,
    so a model can be trained further with qualities added or moved: a lambda of `old` keeps its
    vectors, any other gets them interpolated linearly in log lambda between its two neighbours in
    `old` (extrapolated from the two nearest beyond either end). Rates follow log gain about
    linearly, so a new quality starts near its own operating point."""
    logs = torch.tensor(old, dtype=torch.float64).log()
    out = dict(state)
    for key in ("log_gain", "log_inv_gain"):
        rows = []
        for lam in new:
            t = math.log(lam)
            i = int(torch.searchsorted(logs, torch.tensor(t, dtype=torch.float64)).clamp(1, len(old) - 1))
            w = float((t - logs[i - 1]) / (logs[i] - logs[i - 1]))
            rows.append(state[key][i - 1] * (1 - w) + state[key][i] * w)
        out[key] = torch.stack(rows)
    return out


NEW_LATENT_LOG2_SCALE = -3.0  # appended latent channels start coded under scale 2^-3: about 1e-4 bits per zero token


def _hyper_output_for_latent(weight: Tensor, bias: Tensor, latent: int) -> tuple[Tensor, Tensor]:
    """h_s's last layer (means of the old latent channels, then their log2 scales) laid out for
    `latent` channels: each half padded to `latent` rows, the new means 0 and the new log2 scales
    NEW_LATENT_LOG2_SCALE, so the appended channels (silent: always 0) cost almost no bits."""
    old = len(bias) // 2
    w = weight.new_zeros((2 * latent, *weight.shape[1:]))
    b = bias.new_zeros(2 * latent)
    w[:old], w[latent: latent + old] = weight[:old], weight[old:]
    b[:old], b[latent: latent + old] = bias[:old], bias[old:]
    b[latent + old:] = NEW_LATENT_LOG2_SCALE
    return w, b


@torch.no_grad()
def widened_state(state: dict[str, Tensor], target: PhotoCodec) -> dict[str, Tensor]:
    """`state` (a PhotoCodec's weights of a narrower --channels, or fewer --latent channels) grown to
    `target`'s shapes, coding and reconstructing exactly as before, so a trained model can gain
    capacity and train on (Net2Net, Chen et al. 2016). Each tensor keeps its old values in its leading
    block; the rest take `target`'s fresh values, except that every convolution's new output channels
    get zero weights and bias: the new channels are silent (0 through GDN, ReLU and pixel shuffle),
    yet the fresh weights that read them give them gradients. Those fresh weights are clipped to the
    layer's largest old one, so an integer layer (h_s, the slice contexts) keeps its fixed-point scale
    and its exact outputs. New latent channels are appended as whole slices of the same width: the old
    slices keep their context networks, the new ones start at zero corrections, and h_s gives the new
    channels a small scale (_hyper_output_for_latent)."""
    old_latent, latent = state["log_gain"].shape[1], target.config.latent
    if latent != old_latent:
        width = latent // target.config.slices
        if latent < old_latent or old_latent % width:
            raise ValueError(f"{old_latent} latent channels cannot grow to {target.config.slices} slices of {width}")
        state = dict(state)
        state["h_s.out.weight"], state["h_s.out.bias"] = _hyper_output_for_latent(
            state["h_s.out.weight"], state["h_s.out.bias"], latent)
    out = {k: v.clone() for k, v in target.state_dict().items()}
    for key, old in state.items():
        new = out[key]
        if old.dim() != new.dim() or any(a > b for a, b in zip(old.shape, new.shape)):
            raise ValueError(f"{key}: {tuple(old.shape)} does not fit in {tuple(new.shape)}")
        new[tuple(slice(0, n) for n in old.shape)] = old
    for name, module in target.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) or f"{name}.weight" not in state:
            continue
        axis = 1 if isinstance(module, nn.ConvTranspose2d) else 0  # the weight's output-channel axis
        old_weight, weight = state[f"{name}.weight"], out[f"{name}.weight"]
        bound = float(old_weight.abs().max())
        weight.clamp_(-bound, bound)  # the old block lies within the bound already
        old_out = old_weight.shape[axis]
        weight.narrow(axis, old_out, weight.shape[axis] - old_out).zero_()
        if module.bias is not None:
            out[f"{name}.bias"][old_out:] = 0
    return out
