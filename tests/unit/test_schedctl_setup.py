"""`schedctl config`, `schedctl db`, the help texts and the man pages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import typer.main
from typer._click import Context

from schedctl import configdoc, manpages
from schedctl.app import app
from schedd.config import check_file, load_settings
from schedd.db import head_revision, revisions
from tests.schedctlkit import Cli, migrated_sqlite, one_line

# -- config ---------------------------------------------------------------------------


def test_every_setting_is_described_in_the_reference() -> None:
    assert configdoc.missing_docs(configdoc.load_reference()) == []


def test_config_init_writes_an_annotated_file_equal_to_the_defaults(tmp_path: Path) -> None:
    result = Cli(tmp_path)("config", "init", str(tmp_path / "schedd.toml"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "schedd.toml").read_text()
    assert "# Most connections a process keeps in its pool (1-1000)." in text
    assert '# url = "postgresql://sched:secret@localhost:5432/sched"' in text
    env = {"HOME": str(tmp_path)}
    written = load_settings(tmp_path / "schedd.toml", env)
    assert written.model_dump(exclude={"source"}) == load_settings(None, env).model_dump(
        exclude={"source"}
    )
    assert oct((tmp_path / "schedd.toml").stat().st_mode & 0o777) == "0o600"


def test_config_init_sets_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    target = str(tmp_path / "s.toml")
    assert cli("config", "init", target, "--set", "api.port=9090").exit_code == 0
    assert tomllib.loads(Path(target).read_text())["api"]["port"] == 9090
    again = cli("config", "init", target)
    assert again.exit_code == 6
    assert "--force" in one_line(again)
    assert cli("config", "init", target, "--force").exit_code == 0


def test_config_init_refuses_a_bad_value_and_writes_nothing(tmp_path: Path) -> None:
    result = Cli(tmp_path)("config", "init", str(tmp_path / "s.toml"), "--set", "api.port=0")
    assert result.exit_code == 78
    assert one_line(result).startswith("error: --set: api.port: must be between 1 and 65535")
    assert list(tmp_path.glob("*.toml")) == [] and list(tmp_path.glob(".schedd-*")) == []


def test_config_init_to_stdout_is_a_valid_file(tmp_path: Path) -> None:
    result = Cli(tmp_path)("config", "init", "-", "--set", "worker.executor_types=['shell']")
    path = tmp_path / "out.toml"
    path.write_text(result.stdout)
    assert check_file(path).worker.executor_types == ["shell"]


def test_config_show_redacts_and_check_reports(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    env = {"DATABASE_URL": "postgresql://sched:hunter2@db.example/sched"}
    shown = cli("config", "show", env=env, direct=False)
    assert "hunter2" not in shown.stdout and "db.example" in shown.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[api]\nprot = 1\n")
    result = cli("config", "check", str(bad))
    assert result.exit_code == 78
    assert "did you mean 'port'" in one_line(result)


# -- db -------------------------------------------------------------------------------


def test_db_upgrade_current_and_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    cli = Cli(tmp_path, url)
    missing = cli("db", "check")
    assert missing.exit_code == 69
    assert "db upgrade" in one_line(missing)
    assert not (tmp_path / "new.db").exists()
    assert cli.json("db", "upgrade")["after"] == head_revision()
    assert cli.json("db", "upgrade")["changed"] is False
    assert cli.json("db", "current")["current"] is True
    assert cli("db", "check").exit_code == 0


def test_db_downgrade_asks_names_what_it_undoes_and_goes_back(tmp_path: Path) -> None:
    history = revisions()
    cli = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))
    declined = cli("db", "downgrade", history[-2][:4], input="n\n")
    assert declined.exit_code == 1
    assert f"from {history[-1]} to {history[-2]}, undoing {history[-1]}?" in declined.stderr
    assert declined.stderr.strip().endswith(  # after the prompt (the answer is not echoed)
        "[y/N]:error: downgrade not confirmed: nothing changed (--yes skips the question)"
    )
    assert cli("db", "downgrade", history[-2], input="").exit_code == 1  # no answer: no
    assert cli.json("db", "current")["revision"] == history[-1]
    confirmed = cli("db", "downgrade", history[-2], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert confirmed.stdout.strip().endswith(f"downgraded {history[-1]} -> {history[-2]}")
    assert cli("db", "check").exit_code == 69  # behind this version now
    done = cli.json("db", "downgrade", "base", "--yes")
    assert done["reverted"] == list(reversed(history[:-1])) and done["after"] is None
    empty = cli("db", "downgrade", "0001", "--yes")
    assert empty.exit_code == 65
    assert one_line(empty).startswith("error: the database has no sched schema")
    assert cli.json("db", "upgrade")["after"] == head_revision()
    again = cli("db", "downgrade", "0999", "--yes")
    assert (again.exit_code, one_line(again)[:34]) == (65, "error: unknown revision '0999': on")


def test_db_check_of_an_empty_database_says_to_migrate(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    result = Cli(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")("db", "check")
    assert result.exit_code == 69
    assert "no sched schema yet" in one_line(result)


# -- credentials in --db mode ---------------------------------------------------------


def test_apikey_create_with_db_is_the_way_back_in(tmp_path: Path) -> None:
    cli = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))
    created = cli.json("apikey", "create", "ops", "--scope", "all")
    assert created["key"].startswith("scheduler_") and len(created["scopes"]) == 8
    listed = cli.json("apikey", "list")["items"]
    assert [k["name"] for k in listed] == ["ops"] and "key" not in listed[0]
    revoked = cli.json("apikey", "revoke", str(created["id"]))
    assert revoked == {"id": created["id"], "revoked": True}
    assert cli.json("apikey", "list")["total"] == 0
    assert cli.json("apikey", "list", "--all")["total"] == 1


def test_token_issue_needs_the_api(tmp_path: Path) -> None:
    result = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))("token", "issue")
    assert result.exit_code == 2
    assert "through the API" in one_line(result)


# -- help and man pages ---------------------------------------------------------------


def all_commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    found = []
    for _, ctx in manpages.walk(root, Context(root, info_name="schedctl")):
        found.append(ctx.command_path.split()[1:])
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_a_short_help_that_reads_well(path: list[str], tmp_path: Path) -> None:
    result = Cli(tmp_path)(*path, "--help")
    assert result.exit_code == 0
    summary = result.stdout.split("\n\n")[1].strip()
    assert summary[0].isupper() and summary.endswith(".") and len(summary) < 160
    assert not re.search(r"\b(TODO|XXX)\b", result.stdout)


def test_the_root_help_lists_every_command_group(tmp_path: Path) -> None:
    out = Cli(tmp_path)("--help").stdout
    for name in ("task", "run", "worker", "system", "apikey", "token", "db", "config", "cron"):
        assert re.search(rf"^  {name} ", out, re.MULTILINE), name
    assert "--install-completion" in out


def test_committed_man_pages_are_current() -> None:
    for name, text in manpages.generate().items():
        committed = (manpages.MAN_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"man/{name} is stale: run python -m schedctl.manpages"


def test_man_pages_document_every_exit_status_and_command() -> None:
    page = manpages.generate()["schedctl.1"]
    for path in all_commands():
        assert f'.SS "schedctl {" ".join(path)}'.replace("-", "\\-") in page, path
    for code in (2, 3, 4, 5, 6, 65, 69, 70, 75, 78, 124, 125):
        assert f"\\fB{code} (" in page
