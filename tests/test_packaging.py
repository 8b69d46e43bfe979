"""The dependency ranges of pyproject.toml and the exact tested set of constraints.txt agree, and the documented
install commands use the constraints."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
