"""The package's layering (docs/architecture.md), checked on every change: what each package may import,
what the encode / decode path and `vqzip --help` load, and that setuptools ships every package."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vqzip"


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """Every module `module` imports anywhere in its file (imports inside functions included), relative
    imports resolved: `from X import a` counts as X.a where that is a module, else as X."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _closure(module: str) -> set[str]:
    """What importing `module` can load: its imports, theirs, and so on (third-party names as met)."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m in MODULES:
            todo.extend(_imports(m))
    return seen


UPPER = ("vqzip.api", "vqzip.pick", "vqzip.zoo", "vqzip.cli", "vqzip.bench", "vqzip.training")
RULES = [  # (package, what none of its modules may import, why)
    ("vqzip.coding", UPPER + ("torch",),
     "coding (tokens <-> bytes) sits below the library surface, imports no training code and needs no torch"),
    ("vqzip.codec", UPPER + ("vqzip.coding.container", "vqzip.coding.entropy", "constriction"),
     "codec (pixels <-> tokens) knows nothing of files or bytes"),
    ("vqzip.api", ("vqzip.cli", "vqzip.bench", "vqzip.training"), "the library surface does not import tools above it"),
    ("vqzip.zoo", ("vqzip.cli", "vqzip.bench", "vqzip.training"), "the library surface does not import tools above it"),
    ("vqzip.pick", ("vqzip.api", "vqzip.cli", "vqzip.bench", "vqzip.training", "numpy"),
     "the pick rule is names and sizes: api uses it, it needs no api or numpy"),
    ("vqzip.tokenset", ("vqzip.cli", "vqzip.bench", "vqzip.training", "torch"),
     "token files are read and written without torch, by the library surface"),
    ("vqzip.errors", ("vqzip",), "errors import nothing of vqzip"),
    ("vqzip.training", ("vqzip.cli",), "only the CLI imports the CLI"),
    ("vqzip.bench", ("vqzip.cli",), "only the CLI imports the CLI"),
]


@pytest.mark.parametrize("package,forbidden,why", RULES, ids=[r[0] for r in RULES])
def test_package_imports_follow_the_layers(package: str, forbidden: tuple[str, ...], why: str) -> None:
    bad = sorted(f"{m} imports {i}" for m in MODULES if _within(m, (package,))
                 for i in _imports(m) if _within(i, forbidden) and not _within(i, (package,)))
    assert not bad, f"{why}: " + "; ".join(bad)


def test_the_container_needs_no_torch() -> None:
    assert not {m for m in _closure("vqzip.coding.container") if _within(m, ("torch", "numpy"))}


def test_coding_loads_no_torch() -> None:
    """The context prior codes and decodes with numpy and constriction alone: in a fresh process,
    the coding modules load no torch, and a round trip through ContextPrior (an all-zero integer
    model: uniform tables) works without it."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import vqzip.coding.context as c, vqzip.coding.gaussian, vqzip.coding.priors as p\n"
        "cfg = c.ContextConfig(levels=2, vocab=16, dim=4)\n"
        "(hi, lo), rows = cfg.split, sum(n for _, n in cfg.rows.values())\n"
        "shapes = {'embed': (rows, 4), 'w1': (2, 4, 4), 'b1': (2, 4), 'whi': (2, hi, 4), 'bhi': (2, hi),\n"
        "          'wlo': (2, hi, lo, 4), 'blo': (2, hi, lo), 'shift1': (2,), 'shifthi': (2,), 'shiftlo': (2,)}\n"
        "model = {k: np.zeros(v, np.int32) for k, v in shapes.items()}\n"
        "model['lut'] = np.maximum(1, np.round(c.LUT_ONE * np.exp(-np.arange(c.LUT_SIZE) / c.LUT_STEP))).astype(np.int32)\n"
        "prior, tokens = p.ContextPrior(cfg, model), np.arange(2 * 2 * 5 * 3).reshape(2, 2, 5, 3) % 16\n"
        "back = prior.decode([b for b, _ in prior.encode(tokens)], 2, 5, 3)\n"
        "print(np.array_equal(back, tokens), sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True []"


def test_encoding_and_decoding_load_no_training_code() -> None:
    reached = _closure("vqzip.api")
    assert not {m for m in reached if _within(m, ("vqzip.training", "vqzip.bench", "vqzip.cli"))}


def test_help_loads_no_torch() -> None:
    code = ("import sys; from typer.testing import CliRunner; from vqzip.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_setuptools_ships_every_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(packages - listed)}"
