"""Two deployments (two databases) on one RabbitMQ vhost and on one Redis database.

Each deployment's broker namespace is derived from its database, so its runs travel in
queues and streams of its own: each deployment's worker completes its own runs at once
and never receives the other's run ids (which, here, do not exist in its database: a
worker handed one would drop it and the run would wait for the sweeper).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.config import Settings
from schedd.daemon import Context
from schedd.db import Database, create_database
from schedd.worker.role import WorkerRole
from tests import brokerkit, services

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

RUNS = 40


@pytest.fixture
def two_databases(pg_template: str) -> Iterator[list[Database]]:
    with (
        services.fresh_pg_database(template=pg_template) as first,
        services.fresh_pg_database(template=pg_template) as second,
    ):
        dbs = [create_database(url, max_connections=8) for url in (first, second)]
        # Run ids that cannot be mistaken for one another's.
        with dbs[1].session() as session:
            session.execute(sa.text("SELECT setval('task_runs_id_seq', 100000)"))
        yield dbs
        for db in dbs:
            db.dispose()


def make(kind: str, settings: Settings) -> RabbitMQBroker | RedisBroker:
    if kind == "rabbitmq":
        return RabbitMQBroker(settings, publish_deadline=2.0)
    return RedisBroker(settings, claim_idle=2.0)


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_two_deployments_on_one_broker_never_take_each_others_runs(
    kind: str, request: pytest.FixtureRequest, two_databases: list[Database], tmp_path: Path
) -> None:
    url = str(request.getfixturevalue(f"{kind}_url"))
    deployments = []
    try:
        for index, db in enumerate(two_databases):
            home = tmp_path / f"deployment-{index}"
            home.mkdir()
            settings = brokerkit.broker_settings(
                kind, url, brokerkit._url(db), home, id=f"w-{index}"
            )
            publisher, consumer = make(kind, settings), make(kind, settings)
            role = WorkerRole(Context(settings=settings, db=db, broker=consumer))
            role.start()
            deployments.append((db, home, publisher, consumer, role, settings.broker_namespace))
        assert deployments[0][5] != deployments[1][5]  # derived from the database names
        triggered = []
        for db, home, publisher, *_ in deployments:
            task_id = brokerkit.counting_task(db, home / "executions.log")
            triggered.append(brokerkit.trigger(db, publisher, task_id, RUNS))
        for (db, home, *_), ids in zip(deployments, triggered, strict=True):
            # Promptly: well before a sweeper's redispatch_after (30 s) would hand a run
            # taken by the other deployment to the broker again.
            assert brokerkit.wait_all_completed(db, ids, 10) == {"completed": RUNS}
            assert brokerkit.executions(home / "executions.log") == dict.fromkeys(ids, 1)
    finally:
        for _, _, publisher, consumer, role, _ in deployments:
            role.stop(graceful=False)
            role.join(30)
            publisher.purge(["shell"])
            publisher.close()
            consumer.close()
