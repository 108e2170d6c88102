"""`vqzip bench`: rate-distortion benchmark of vqzip models against PNG, JPEG, WebP, AVIF and JPEG XL."""
from __future__ import annotations

from .metrics import bd_rate, psnr, rate_at_psnr, ssim
from .runner import LearnedCodec, Point, VqzipCodec, bench_images, run_bench

__all__ = ["run_bench", "bench_images", "LearnedCodec", "VqzipCodec", "Point", "bd_rate", "rate_at_psnr", "psnr", "ssim"]
