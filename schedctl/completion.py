"""Dynamic shell completion (bash, zsh, fish) of task names and run ids from the API.

Typer calls these while the shell asks for candidates (``_SCHEDCTL_COMPLETE``): the
root callback has not run, so the API address and credential are found here from the
global options already typed (``--api``, ``--token``, ``--config``), their variables,
or the local schedd's files, exactly as a command would. One short HTTP request; any
problem (no server, no key, a slow answer) completes nothing and prints nothing: a
completion must never write into the operator's command line. Direct mode (``--db``)
is not consulted: opening a database is too slow for a key press.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

TIMEOUT = 1.0  # seconds for the whole request
LIMIT = 200  # candidates asked for


def _get(ctx: typer.Context, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
    from schedctl.context import Cli, Options

    root = ctx.find_root()
    cli = root.obj if isinstance(root.obj, Cli) else None
    if cli is None:
        return None
    values = root.params
    options = Options(
        api=values.get("api") or None,
        token=values.get("token_") or None,
        config=values.get("config_"),
    )
    if values.get("db_") and not options.api:
        return None
    cli.options = options
    endpoint = cli.endpoint()
    # urllib, not httpx: a completion runs at every key press and httpx costs an import.
    import json
    import urllib.parse
    import urllib.request

    url = f"{endpoint.url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    if not url.startswith(("http://", "https://")):
        return None
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        data = json.load(response)
    return data if isinstance(data, dict) else None


def _quietly(find: Callable[[], list[tuple[str, str]]]) -> list[tuple[str, str]]:
    try:
        return find()
    except Exception:  # noqa: BLE001 - a completion fails silently, whatever happened
        return []


def task_names(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Task names starting with what is typed (ids too, when digits are typed)."""

    def find() -> list[tuple[str, str]]:
        params: dict[str, Any] = {"size": LIMIT}
        if incomplete and not incomplete.isdigit():
            params["name"] = incomplete
        page = _get(ctx, "/api/tasks", params)
        if page is None:
            return []
        found = []
        for task in page["items"]:
            about = f"{task['executor']}, {task.get('schedule') or 'no schedule'}"
            if task["name"].startswith(incomplete):
                found.append((task["name"], about))
            elif incomplete.isdigit() and str(task["id"]).startswith(incomplete):
                found.append((str(task["id"]), f"{task['name']}: {about}"))
        return found

    return _quietly(find)


def run_ids(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Ids of the latest runs starting with what is typed, with their status."""

    def find() -> list[tuple[str, str]]:
        page = _get(ctx, "/api/runs", {"size": LIMIT})
        if page is None:
            return []
        return [
            (str(run["id"]), f"task {run['task_id']}, {run['status']}")
            for run in page["items"]
            if str(run["id"]).startswith(incomplete)
        ]

    return _quietly(find)
