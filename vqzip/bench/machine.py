"""What a timing was measured on. Sessions run on more than one kind of 2-core machine, and an
AVX512 one with native bfloat16 codes a photo about a third faster than an AVX2 one, so every
committed timing names its CPU. Reads /proc/cpuinfo (no torch import: some benchmarks time start-up)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> dict[str, object]:
    """{'cpu': model name, 'cpu_count', 'avx512': bool | None, 'avx512_bf16': bool | None} (None off Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    fields: dict[str, str] = {}
    for line in info.splitlines():  # the first processor's fields; every core is the same model
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields["flags"].split()) if "flags" in fields else None
    return {"cpu": name, "cpu_count": os.cpu_count(),
            "avx512": None if flags is None else "avx512f" in flags,
            "avx512_bf16": None if flags is None else bool({"avx512_bf16", "amx_bf16"} & flags)}
