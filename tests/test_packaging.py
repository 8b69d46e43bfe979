"""The dependency ranges of pyproject.toml and the exact tested set of constraints.txt agree, the documented
install commands use the constraints, and a built wheel carries what the quickstart needs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_declared_dependency_is_a_lower_bound_met_by_the_tested_set() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"] + extras["sim"] + extras["dev"]]
    pins = _pins()
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not in constraints.txt (regenerate it after installing)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} excludes the tested {pins[name]}"
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: a library takes ranges"


def test_the_documented_installs_use_the_constraints() -> None:
    commands = re.findall(r"pip install [^\n&]*\.\[sim,dev\]", (ROOT / "README.md").read_text())
    commands += re.findall(r"pip install [^\n&]*\.\[sim,dev\]", (ROOT / ".ci" / "run").read_text())
    assert len(commands) == 3 and all("-c constraints.txt" in c for c in commands), commands
    assert (ROOT / "docs" / "install.md").is_file()


# What the wheel must carry for `hma-zoo quickstart` (and `--pretrained`), beside the code.
_SHIPPED_IN_WHEEL = ("tok-vq-f4-4k.simmix", "hma-vq-t64.simmix")


@pytest.mark.slow
def test_an_installed_wheel_finds_its_recipes_and_weights_outside_the_repo(tmp_path: Path) -> None:
    """Build a wheel from the tracked layout (``pip wheel --no-deps``), install it alone into a folder, and run it
    from a folder outside the repository with that folder first on the path: ``hma-zoo quickstart --help`` works,
    and the recipe, the shipped tokenizer and the pretrained table come from the installed package."""
    for name in _SHIPPED_IN_WHEEL:
        if not (ROOT / "pretrained" / name / "config.json").is_file():
            pytest.skip(f"pretrained/{name} is not in this checkout")
    tree = tmp_path / "tree"  # only what the build needs (a copy: the build writes build/ and *.egg-info in it)
    tree.mkdir()
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / f, tree / f)
    shutil.copytree(ROOT / "src", tree / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "recipes", tree / "recipes")
    for name in _SHIPPED_IN_WHEEL:
        shutil.copytree(ROOT / "pretrained" / name, tree / "pretrained" / name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheels"), str(tree)], check=True, env=env, cwd=tmp_path)
    wheel = next((tmp_path / "wheels").glob("hma_zoo-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, env=env, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_env = {**env, "PYTHONPATH": str(site)}
    help_ = subprocess.run([sys.executable, str(site / "bin" / "hma-zoo"), "quickstart", "--help"], env=run_env,
                           cwd=elsewhere, capture_output=True, text=True)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: hma-zoo quickstart"), help_.stderr[-3000:]
    probe = (
        "import json, hma_zoo, hma_zoo.quickstart as q, hma_zoo.pretrained as p\n"
        "from hma_zoo.resources import resource_dir\n"
        "m = hma_zoo.create_model('hma-vq-t64.simmix', pretrained=True)\n"
        "print(json.dumps({'package': hma_zoo.__file__, 'recipes': str(resource_dir('recipes')),\n"
        "  'recipe': str(q.RECIPE), 'recipe_ok': q.RECIPE.is_file(), 'tokenizer': str(q.SHIPPED_TOKENIZER),\n"
        "  'tokenizer_ok': (q.SHIPPED_TOKENIZER / 'config.json').is_file(), 'shipped': sorted(p.shipped()),\n"
        "  'model': type(m).__name__}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=run_env, cwd=elsewhere, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    installed = str(site.resolve())
    for key in ("package", "recipes", "recipe", "tokenizer"):
        assert str(Path(found[key]).resolve()).startswith(installed), (key, found[key])  # not the source tree
    assert found["recipe_ok"] and found["tokenizer_ok"] and found["model"] == "HMA"
    assert found["shipped"] == sorted(_SHIPPED_IN_WHEEL)


# Core dependencies that src/ does not import by name: the distribution whose own requirements name each, and the
# module of it that src/ imports and that uses it at run time.
_IMPORTED_THROUGH = {
    "torchvision": ("timm", "timm"),  # timm imports torchvision.ops; pinned to the build that imports beside our torch
    "jsonargparse": ("lightning", "lightning.pytorch.cli"),  # LightningCLI parses recipes with it (a lightning extra)
}


def _imported_modules() -> set[str]:
    """Every absolute module name imported in src/hma_zoo (``a.b.c`` adds ``a``, ``a.b`` and ``a.b.c``)."""
    import ast

    names: set[str] = set()
    for path in (ROOT / "src" / "hma_zoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return {".".join(n.split(".")[: k + 1]) for n in names for k in range(n.count(".") + 1)}


def test_every_core_dependency_is_imported() -> None:
    """Each core dependency of pyproject.toml is imported by src/ (as a distribution: pillow is PIL), or is required
    by a library whose module that needs it src/ imports (torchvision for timm, jsonargparse for LightningCLI)."""
    from importlib.metadata import packages_distributions, requires

    core = [canonicalize_name(Requirement(r).name)
            for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    modules = _imported_modules()
    by_module = packages_distributions()
    imported = {canonicalize_name(d) for m in modules if "." not in m for d in by_module.get(m, [])}
    for name in core:
        if name in imported:
            continue
        assert name in _IMPORTED_THROUGH, f"{name} is a core dependency that nothing in src/ imports: drop it or use it"
        dist, module = _IMPORTED_THROUGH[name]
        assert module in modules, f"{name} is declared for {module}, which src/ no longer imports"
        needs = {canonicalize_name(Requirement(r).name) for r in requires(dist) or []}
        assert name in needs, f"{dist} does not require {name}"
