"""The wheel must carry every package: the list in pyproject.toml cannot drift."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_python_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("schedd", "schedctl")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    mapped = tuple(config["package-dir"])  # installed from another directory
    phantom = {p for p in listed - on_disk if not p.startswith(mapped)}
    assert phantom == set(), "listed packages that do not exist"
