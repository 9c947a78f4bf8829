"""The wheel must carry every package: the list in pyproject.toml cannot drift."""

from __future__ import annotations

import os
import site
import subprocess
import sys
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


def test_a_checkout_that_was_not_installed_finds_its_migrations() -> None:
    """`python -m bench.X` from a plain checkout: schedd is imported from the checkout
    and `schedd.migrations` (an install-time mapping of migrations/) does not exist."""
    # -S: no site, so no editable-install finder; the dependencies come from the
    # site-packages directories given as plain paths (their .pth files are not run).
    path = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('schedd.migrations') is None\n"
        "from schedd.db import head_revision, migrations_dir\n"
        "print(migrations_dir()); print(head_revision())\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={**os.environ, "PYTHONPATH": path},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    where, head = done.stdout.split()
    assert Path(where) == ROOT / "migrations"
    assert head
