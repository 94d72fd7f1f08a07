"""Table definitions: the spec's four collections (workers, tasks, assignments, results) plus
task_events. Alembic migrations in alembic/versions/ create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("address", String(255), nullable=False),
    Column("cpu", Float, nullable=False, default=0.0),
    Column("mem_gb", Float, nullable=False, default=0.0),
    Column("storage_gb", Float, nullable=False, default=0.0),
    Column("gpu", Integer, nullable=False, default=0),
    Column("runtime", String(16), nullable=False, default=""),
    Column("source", String(16), nullable=False),  # self | manual
    Column("registered_at", Float, nullable=False),
    Column("last_heartbeat", Float, nullable=True),
    Column("drained", Boolean, nullable=False, default=False, server_default=false()),
    Column("cpu_percent", Float, nullable=True),  # node telemetry, last heartbeat
    Column("mem_used_gb", Float, nullable=True),
    Column("disk_free_gb", Float, nullable=True),
    # `cloudai worker rm`: forgotten, kept for the history of its tasks; registering clears it
    Column("removed_at", Float, nullable=True),
    Column("gpu_ids", JSON, nullable=True),  # its devices (registration); None: 0..gpu-1
    Column("gpu_stats", JSON, nullable=True),  # per-device telemetry, last heartbeat
    Column("busy_gpu_ids", JSON, nullable=True),  # in use with no task on them: not handed out
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, default=""),
    Column("image", String(255), nullable=False),
    Column("command", JSON, nullable=False),
    Column("env", JSON, nullable=False),
    Column("secret_env", JSON, nullable=True),  # --secret-env: never shown
    Column("req_cpu", Float, nullable=False),
    Column("req_mem_gb", Float, nullable=False),
    Column("req_storage_gb", Float, nullable=False),
    Column("req_gpu", Integer, nullable=False),
    Column("requested_worker", String(64), nullable=True),
    Column("owner", String(64), nullable=False, default=""),
    Column("grace_seconds", Float, nullable=False, default=0.0),
    Column("stop_signal", String(16), nullable=False, default=""),
    Column("pids_limit", Integer, nullable=False, default=0, server_default="0"),  # 0: default
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("oom_killed", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("completed_at", Float, nullable=True),
    Column("cpu_percent", Float, nullable=True),  # usage from the last heartbeat
    Column("mem_used_gb", Float, nullable=True),
    Column("usage_at", Float, nullable=True),
    # its policy (core/policy.py) and its run: 1, then 2 after a retry, ...
    Column("priority", Integer, nullable=False, default=500, server_default="500"),
    Column("preemptible", Boolean, nullable=False, default=False, server_default=false()),
    Column("timeout_seconds", Float, nullable=True),  # None: no time limit
    Column("retries", Integer, nullable=False, default=0, server_default="0"),
    Column("retry_on_timeout", Boolean, nullable=False, default=False, server_default=false()),
    Column("attempt", Integer, nullable=False, default=1, server_default="1"),
    Column("not_before", Float, nullable=True),  # a retry's backoff: not placed before this
    Index("ix_tasks_status", "status"),
    Index("ix_tasks_owner_status", "owner", "status"),  # a user's pending count
)

assignments = Table(
    "assignments",
    metadata,
    Column("task_id", String(64), ForeignKey("tasks.task_id"), primary_key=True),
    Column("worker_id", String(64), ForeignKey("workers.worker_id"), nullable=False),
    Column("assigned_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("gpu_ids", JSON, nullable=True),  # the devices the placement picked
    Index("ix_assignments_worker", "worker_id"),
)

results = Table(
    "results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), ForeignKey("tasks.task_id"), nullable=False, unique=True),
    Column("worker_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("logs", Text, nullable=False, default=""),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("oom_killed", Boolean, nullable=False, default=False),
    Column("started_at", Float, nullable=True),
    Column("completed_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
)

# One row per earlier run of a task: a retried run, or a preempted one sent back to the queue.
# The task's result is only ever its last run's; these rows hold the others' outcomes.
task_attempts = Table(
    "task_attempts",
    metadata,
    Column("task_id", String(64), ForeignKey("tasks.task_id"), primary_key=True),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("worker_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("oom_killed", Boolean, nullable=False, default=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("gpu_ids", JSON, nullable=True),
)

task_events = Table(
    "task_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), ForeignKey("tasks.task_id"), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Index("ix_task_events_task", "task_id", "id"),
)

# One row per cancelled task: what was decided (who, when, why, how) and how far the stop got.
# `tasks.status` says `cancelled` from the start; these columns are the reality catching up.
cancellations = Table(
    "cancellations",
    metadata,
    Column("task_id", String(64), ForeignKey("tasks.task_id"), primary_key=True),
    Column("worker_id", String(64), nullable=True),  # None: it had not been placed
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("force", Boolean, nullable=False, default=False),
    Column("grace_seconds", Float, nullable=False),
    Column("stop_signal", String(16), nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("delivery_attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("signal_at", Float, nullable=True),
    Column("killed_at", Float, nullable=True),
    Column("exited_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("forced", Boolean, nullable=False, default=False),
    Column("removed_at", Float, nullable=True),
    Column("stop_error", Text, nullable=False, default=""),
    Index("ix_cancellations_open", "worker_id", "removed_at"),
)

# Users of the CLI and API: a token each, kept only as its sha256.
users = Table(
    "users",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(32), nullable=False, default=""),
)

# One-time tokens with which a new machine joins as a worker (the secret kept as its sha256).
join_tokens = Table(
    "join_tokens",
    metadata,
    Column("token_id", String(12), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("created_by", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("used_by", String(64), nullable=True),  # the worker ID that joined with it
)

# The cluster's identity: one row, made when the master first opens an empty store. Workers
# learn it at their first registration and refuse a master that answers with another one.
cluster = Table(
    "cluster",
    metadata,
    Column("row", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("cluster_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)
