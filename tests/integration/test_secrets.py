"""Secrets stay secret: a task's --secret-env reaches its process and no answer shows it."""

from __future__ import annotations

import json

from cloudai.cli.render import task_json
from cloudai.core.models import SECRET_MASK, TaskSpec
from cloudai.core.resources import Resources
from cloudai.store import Store, tasks
from tests.cluster import LocalCluster

SECRET = "hunter2-s3cr3t-value"


def test_secret_env_reaches_the_task_and_no_answer(cluster: LocalCluster) -> None:
    spec = TaskSpec(
        image="busybox",
        command=("sh", "-c", 'test "$PASSWORD" = "$EXPECTED" && echo secret-ok'),
        env={"EXPECTED": SECRET},
        secret_env={"PASSWORD": SECRET},
        resources=Resources(cpu=0.5, mem_gb=0.1),
    )
    submitted = cluster.client.submit(spec)
    assert submitted.spec.secret_env == {"PASSWORD": SECRET_MASK}
    done = cluster.wait_status(submitted.task_id, "completed")
    assert done.exit_code == 0 and done.result is not None and "secret-ok" in done.result.logs

    shown = cluster.client.get_task(submitted.task_id)
    listed = cluster.client.list_tasks()
    for task in (shown, *listed):
        assert task.spec.secret_env == {"PASSWORD": SECRET_MASK}
        answer = json.dumps(task_json(task))
        assert "PASSWORD" in answer
        assert answer.count(SECRET) == 1  # only the plain --env EXPECTED, never the secret
        assert all(SECRET not in e.message for e in task.events)

    store = Store(cluster.db_url, migrate=False)
    try:
        stored = store.tx_sync(tasks.get, submitted.task_id)
        assert stored is not None and stored.spec.secret_env == {"PASSWORD": SECRET}  # kept
    finally:
        store.close()


def test_a_bad_secret_env_is_refused_without_echoing_it() -> None:
    from cloudai.cli.commands import parse_env
    from cloudai.errors import InvalidArgument

    try:
        parse_env([f"{SECRET}"], "--secret-env")
    except InvalidArgument as exc:
        assert "expected KEY=VALUE" in exc.message and SECRET not in exc.message
    else:
        raise AssertionError("a --secret-env without '=' was accepted")
