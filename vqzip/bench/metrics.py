"""Distortion metrics (PSNR, SSIM) on RGB uint8 images, and the Bjontegaard delta rate.

PSNR: per image, over all pixels of all three RGB channels, peak 255; an image decoded exactly
(MSE 0, e.g. PNG) scores PSNR_CAP_DB instead of infinity, so means stay finite.

SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, peak 255,
'valid' filtering (no padding, like the reference MATLAB code, without its downsampling), computed
on each RGB channel separately and averaged over the three channels; then averaged over images.

BD-rate: Bjontegaard's classic method over PSNR: for each curve fit log10(rate) as a polynomial of
PSNR (numpy.polyfit, degree 3, or len(points) - 1 when a curve has only 2 or 3 points), integrate
both fits over the PSNR interval the two curves share, and turn the mean log-rate difference into a
percentage: negative means the test curve needs fewer bits than the reference for the same PSNR.
None when the curves' PSNR ranges do not overlap or a curve has fewer than 2 distinct points.

Rate at equal PSNR: BD-rate averages over a range and can hide a curve that wins at one end and loses
at the other, so each point is also compared with the reference's rate at its own PSNR, read off the
reference's points by linear interpolation of log(rate) between the two that bracket it.
"""
from __future__ import annotations

import math

import numpy as np

PSNR_CAP_DB = 100.0

_SSIM_K1, _SSIM_K2, _SSIM_L = 0.01, 0.03, 255.0
_WIN, _SIGMA = 11, 1.5


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """PSNR in dB of uint8 images (..., H, W, C); one value per leading index, capped at PSNR_CAP_DB."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = ((a - b) ** 2).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        out = np.where(mse > 0, 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)
    out = np.minimum(out, PSNR_CAP_DB)
    return float(out) if out.ndim == 0 else out


def _gaussian() -> np.ndarray:
    x = np.arange(_WIN) - (_WIN - 1) / 2
    g = np.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


def _band(n: int, w: np.ndarray) -> np.ndarray:
    """(n - k + 1, n) matrix whose rows apply the k-tap filter w at each 'valid' position."""
    k = len(w)
    g = np.zeros((n - k + 1, n))
    for i in range(n - k + 1):
        g[i, i : i + k] = w
    return g


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (..., H, W, C) over H and W."""
    k = len(w)
    h, wd = x.shape[-3], x.shape[-2]
    if max(h, wd) <= 128:  # small images (CIFAR): two batched matrix products are ~4x faster
        lead = x.shape[:-3]
        y = np.matmul(_band(h, w), x.reshape(*lead, h, -1)).reshape(*lead, h - k + 1, wd, x.shape[-1])
        return np.matmul(_band(wd, w), y)
    y = sum(w[i] * x[..., i : h - k + 1 + i, :, :] for i in range(k))
    return sum(w[i] * y[..., :, i : wd - k + 1 + i, :] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Mean SSIM of uint8 images (..., H, W, 3), averaged over RGB channels; one value per leading index.

    Images smaller than 11x11 fall back to a window the size of the image's shorter side.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    w = _gaussian()
    side = min(a.shape[-3], a.shape[-2])
    if side < _WIN:
        x = np.arange(side) - (side - 1) / 2
        w = np.exp(-(x**2) / (2 * _SIGMA**2))
        w /= w.sum()
    c1, c2 = (_SSIM_K1 * _SSIM_L) ** 2, (_SSIM_K2 * _SSIM_L) ** 2
    mu_a, mu_b, e_aa, e_bb, e_ab = _filter_valid(np.stack([a, b, a * a, b * b, a * b]), w)
    s_aa, s_bb, s_ab = e_aa - mu_a**2, e_bb - mu_b**2, e_ab - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    out = m.mean(axis=(-3, -2, -1))
    return float(out) if out.ndim == 0 else out


MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window need a side above 160 pixels


def ms_ssim_missing() -> str | None:
    """None when MS-SSIM can be measured here, else why not (one line)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorch_msssim") is None:
        return "MS-SSIM not measured: it needs torch and pytorch-msssim (pip install 'vqzip[train]')"
    return None


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM (Wang et al. 2003, pytorch-msssim's implementation, float64) of uint8 RGB images
    (N, H, W, C), one value per image; NaN for images too small for its five scales, and where
    pytorch-msssim (which needs torch: the train extra) is not installed."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 3:
        a, b = a[None], b[None]
    if min(a.shape[1:3]) < MS_SSIM_MIN_SIDE or ms_ssim_missing():
        return np.full(len(a), np.nan)
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    x, y = (torch.from_numpy(np.array(v, dtype=np.float64)).permute(0, 3, 1, 2) for v in (a, b))
    return _ms_ssim(x, y, data_range=255, size_average=False).numpy()


def bd_rate(ref_rate, ref_psnr, test_rate, test_psnr, up_to: float | None = None) -> float | None:
    """Bjontegaard delta rate of the test curve against the reference curve, in percent (see module doc);
    `up_to`: over the shared PSNR range cut at this many dB (each curve still fitted on all its points),
    to compare curves that reach different heights over the same range."""
    r1, d1 = np.asarray(ref_rate, float), np.asarray(ref_psnr, float)
    r2, d2 = np.asarray(test_rate, float), np.asarray(test_psnr, float)
    if min(len(np.unique(d1)), len(np.unique(d2))) < 2 or (r1 <= 0).any() or (r2 <= 0).any():
        return None
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max(), math.inf if up_to is None else up_to)
    if not hi > lo:
        return None
    p1 = np.polyfit(d1, np.log10(r1), min(3, len(d1) - 1))
    p2 = np.polyfit(d2, np.log10(r2), min(3, len(d2) - 1))
    i1, i2 = np.polyint(p1), np.polyint(p2)
    int1 = np.polyval(i1, hi) - np.polyval(i1, lo)
    int2 = np.polyval(i2, hi) - np.polyval(i2, lo)
    avg = (int2 - int1) / (hi - lo)
    out = (10.0**avg - 1.0) * 100.0
    return float(out) if math.isfinite(out) else None


def rate_at_psnr(ref_rate, ref_psnr, psnr_db: float) -> float | None:
    """The reference curve's rate at this PSNR (log-linear between bracketing points), None outside it."""
    order = np.argsort(np.asarray(ref_psnr, float))
    d, r = np.asarray(ref_psnr, float)[order], np.asarray(ref_rate, float)[order]
    if len(d) < 2 or (r <= 0).any() or not d[0] <= psnr_db <= d[-1]:
        return None
    return float(np.exp(np.interp(psnr_db, d, np.log(r))))
