"""The README's "Coming from the seed" table has a row for every cargo, sqlx and docker
command of the seed's quick reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seed" / "quick-reference.zh.md"
TOOLS = ("cargo ", "sqlx ", "docker-compose ", "docker ")


def seed_commands(text: str) -> set[str]:
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command.startswith(TOOLS):
                commands.add(re.sub(r"\s+", " ", command))
    return commands


def readme_rows() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Coming from the seed", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)`", section, flags=re.M))


def test_every_seed_tool_command_has_a_row() -> None:
    if not SEED.exists():
        pytest.skip(f"seed not found at {SEED}")
    commands = seed_commands(SEED.read_text(encoding="utf-8"))
    assert len(commands) > 30  # the parse found the seed's commands
    assert sorted(commands - readme_rows()) == []
