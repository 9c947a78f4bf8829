"""CLI start-up: how long `schedd` and `schedctl` take from exec to exit.

Each command runs ``--repeat`` times as a fresh process (what a shell script calling it
in a loop pays), after one unmeasured warm-up run (the page cache). Commands:

- ``schedd --help``, ``schedctl --help``;
- ``schedctl task list`` against a local API (`schedd run --role api` on SQLite with
  ten tasks), with ``--api`` and ``--token``;
- ``schedctl --db URL task list`` straight on that SQLite database.

Each runs as ``python -m schedd`` / ``python -m schedctl``. Prints min, median and p90
in milliseconds and writes JSON under bench/results/.

    python -m bench.startup [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api_load import api_daemon
from bench.common import percentile, table, write_result


def timed(argv: list[str], env: dict[str, str], repeat: int) -> list[float]:
    """Wall seconds of each of ``repeat`` runs of ``argv`` (after one warm-up run)."""
    subprocess.run(argv, env=env, capture_output=True, check=True, timeout=60)
    seconds: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True, timeout=60)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command (default 15)")
    args = parser.parse_args()
    # `python -m`: the code on this interpreter's path (a checkout, or what is
    # installed), the same work as the console scripts plus a negligible runpy step.
    schedd = [sys.executable, "-m", "schedd"]
    schedctl = [sys.executable, "-m", "schedctl"]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        url = f"sqlite:///{home}/sched.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDD_", "SCHED_"))}
        env.pop("DATABASE_URL", None)
        env["HOME"] = str(home)
        with api_daemon(url, home) as (port, key, _process):
            base = f"http://127.0.0.1:{port}"
            for i in range(10):
                httpx.post(
                    f"{base}/api/tasks",
                    json={
                        "name": f"startup-{i}",
                        "executor": "shell",
                        "command": "true",
                        "schedule": "0 0 * * * *",
                    },
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=10,
                ).raise_for_status()
            commands = {
                "schedd --help": [*schedd, "--help"],
                "schedctl --help": [*schedctl, "--help"],
                "schedctl task list (API)": [
                    *schedctl,
                    "--api",
                    base,
                    "--token",
                    key,
                    "task",
                    "list",
                ],
                "schedctl --db URL task list": [*schedctl, "--db", url, "task", "list"],
            }
            for name, argv in commands.items():
                ms = [s * 1000 for s in timed(argv, env, args.repeat)]
                results.append(
                    {
                        "command": name,
                        "runs": len(ms),
                        "min_ms": round(min(ms), 1),
                        "median_ms": round(statistics.median(ms), 1),
                        "p90_ms": round(percentile(ms, 90), 1),
                    }
                )
    columns = ["command", "runs", "min_ms", "median_ms", "p90_ms"]
    print(table(columns, [[r[c] for c in columns] for r in results]))
    path = write_result("startup", {"arguments": vars(args), "results": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
