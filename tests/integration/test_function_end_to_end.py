"""Function runs end to end on PostgreSQL and Redis: each completes exactly once.

Two real workers (WorkerRole, in this process) consume run ids from Redis, claim them
in PostgreSQL and call ``tests.funcs:append_run_id`` in their function pools; each
call appends its run id to a file, so "exactly once" is counted. Afterwards no pool
process is left.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from schedd.db import Database, create_database
from schedd.models import Task
from tests import brokerkit

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    db = create_database(pg_url, max_connections=20)
    yield db
    db.dispose()


def pool_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(part.endswith("funcpool.py") for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_function_runs_through_redis_each_complete_exactly_once(
    redis_url: str, pg_db: Database, tmp_path: Path
) -> None:
    namespace = f"sched-fn-{uuid.uuid4().hex[:8]}"
    log_file = tmp_path / "executions.log"
    settings = brokerkit.broker_settings("redis", redis_url, brokerkit._url(pg_db), tmp_path)
    publisher = brokerkit.make_broker("redis", settings, pg_db, namespace)
    with pg_db.session() as session:
        task = Task(
            name=f"fn-{namespace}",
            task_type="function",
            executor="function",
            command="tests.funcs:append_run_id",
            arguments=[json.dumps(str(log_file))],
        )
        session.add(task)
        session.flush()
        assert task.id is not None
        task_id = task.id
    try:
        with (
            brokerkit.workers(
                "redis",
                redis_url,
                pg_db,
                tmp_path,
                namespace,
                2,
                working_directory=str(ROOT),
                function_pool_size="4",
                max_runs_per_process="150",  # every process is recycled a few times
            ),
            # As the scheduler does: runs handed back (a fence on a loaded machine) are
            # published again.
            brokerkit.sweeping(pg_db, publisher, redispatch_after=3.0),
        ):
            ids = brokerkit.trigger(pg_db, publisher, task_id, 1000, task_type="function")
            found = brokerkit.wait_all_completed(pg_db, ids, timeout=120)
            assert found == {"completed": 1000}
            # 2 workers x 4 (recycled ones exit at once after their last call)
            assert brokerkit.wait_for(lambda: len(pool_processes()) == 8, 10)
        ran = brokerkit.executions(log_file)
        assert set(ran) == set(ids)
        assert max(ran.values()) == 1, [r for r, n in ran.items() if n > 1][:10]
        assert brokerkit.wait_for(lambda: not pool_processes(), 10)
    finally:
        publisher.purge(["function"])  # type: ignore[attr-defined]
        publisher.close()
