"""The dead-man's switch with real processes: when the scheduler stops, the API
process (which sends alerts too) reports the task absent."""

from __future__ import annotations

import json
import signal
import time

import sqlalchemy as sa

from schedd.models import RunStatus, TaskRun
from schedd.schemas import TaskUpdate
from schedd.services import tasks
from tests.alertkit import Receiver, free_port
from tests.faultkit import Cluster
from tests.scheduler_support import new_task
from tests.workerkit import wait_until


def test_absent_fires_from_the_api_process_when_the_scheduler_stops(cluster: Cluster) -> None:
    receiver = Receiver().start()
    channel = {"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET"}
    env = {
        "SCHEDD_NOTIFY__CHANNELS": json.dumps({"hook": {**channel, "timeout_seconds": 2}}),
        "SCHEDD_NOTIFY__HTTP_ALLOW": "127.0.0.1",
        "SCHEDD_NOTIFY__CHECK_INTERVAL": "0.2",
        "HOOK_SECRET": "s3cret",
        "JWT_SECRET": "j" * 40,
        "SCHEDD_API__PORT": str(free_port()),
    }
    task_id = new_task(cluster.db, "heartbeat", schedule="* * * * * *", now=cluster.db.now())
    scheduler = cluster.start("scheduler", "worker", **env)
    cluster.start("api", **env)

    def completed() -> int:
        with cluster.db.session() as session:
            return session.execute(
                sa.select(sa.func.count()).where(
                    TaskRun.task_id == task_id, TaskRun.status == RunStatus.completed.value
                )
            ).scalar_one()

    try:
        assert wait_until(lambda: completed() >= 1, 30), cluster.logs()
        # Now that it runs every second, expect a completion every 2 seconds.
        rules = {"absent": ["hook"], "expect_every": "2s"}
        with cluster.db.session() as session:
            tasks.update_task(session, task_id, TaskUpdate(notify=rules))
        time.sleep(1.0)
        assert receiver.messages() == [], "absent while the task runs"

        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(30) == 0
        assert wait_until(lambda: len(receiver.messages()) >= 1, 20), cluster.logs()
        time.sleep(0.3)
    finally:
        receiver.stop()
    (message,) = receiver.messages()
    assert message.signed("s3cret")
    assert message.json["event"] == "absent"
    assert message.json["task"]["name"] == "heartbeat"
    assert "expect_every" in message.json["reason"]
