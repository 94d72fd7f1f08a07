"""The one client API: the CLI, the shell and the tests all talk to the master through it."""

from __future__ import annotations

import dataclasses
import getpass
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.config import home
from cloudai.core.models import Task, TaskSpec, Worker
from cloudai.core.requests import TaskFilter
from cloudai.errors import CloudAIError, InvalidArgument, Unavailable, exit_code_for
from cloudai.rpc.convert import spec_to_pb, task_filter_to_pb, task_from_pb, worker_from_pb
from cloudai.rpc.errors import from_rpc_error
from cloudai.rpc.server import CHANNEL_OPTIONS
from cloudai.security.tls import master_target_options

__all__ = [
    "DEFAULT_MASTER",
    "CancelAck",
    "Client",
    "Credentials",
    "TaskPage",
    "current_user",
    "default_master",
]

DEFAULT_MASTER = "localhost:50051"


@dataclasses.dataclass(frozen=True)
class CancelAck:
    task_id: str
    success: bool
    message: str
    status: str = ""
    error_code: str = ""  # a gRPC status name, on failure
    already: bool = False
    queued: bool = False

    @property
    def exit_code(self) -> int:
        return 0 if self.success else exit_code_for(self.error_code)


@dataclasses.dataclass(frozen=True)
class TaskPage:
    """A page of `task ls`: the tasks shown, how many the caller may see in all, and how many
    match but are other users' (hidden from a non-admin)."""

    tasks: list[Task]
    total: int
    hidden: int = 0

    @property
    def more(self) -> int:
        return max(self.total - len(self.tasks), 0)


DEADLINE = 10.0
CANCEL_DEADLINE = 35.0
FOLLOW_DEADLINE = 24 * 3600.0
T = TypeVar("T")


def default_master() -> str:
    return os.environ.get("CLOUDAI_MASTER") or DEFAULT_MASTER


def current_user() -> str:
    """The name an --insecure master records (it cannot check it): CLOUDAI_USER, else the OS
    user, as printable ASCII (gRPC metadata is ASCII)."""
    name = os.environ.get("CLOUDAI_USER") or ""
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = f"uid-{os.getuid()}"
    return "".join(c for c in name if c.isascii() and c.isprintable())[:32] or "anonymous"


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What the client proves and trusts: a user token, and the cluster CA (None: plaintext)."""

    token: str = ""
    ca: bytes | None = None

    @classmethod
    def from_env(cls, token: str | None = None, insecure: bool = False) -> Credentials:
        """--token, else $CLOUDAI_TOKEN, else $CLOUDAI_HOME/token; the CA from $CLOUDAI_CA,
        else $CLOUDAI_HOME/pki/ca.crt (with neither, or `insecure`: plaintext)."""
        if token is None:
            token = os.environ.get("CLOUDAI_TOKEN") or _read(home() / "token", "token")
        ca = None
        if not insecure:
            ca_path = os.environ.get("CLOUDAI_CA") or str(home() / "pki" / "ca.crt")
            if os.environ.get("CLOUDAI_CA") or os.path.exists(ca_path):
                text = _read(pathlib.Path(ca_path), "CA certificate")
                if "-----BEGIN CERTIFICATE-----" not in text:  # else gRPC fails obscurely
                    raise InvalidArgument(
                        f"no CA certificate at {ca_path} (from $CLOUDAI_CA, else "
                        "$CLOUDAI_HOME/pki/ca.crt): copy the cluster's ca.crt there"
                    )
                ca = text.encode()
        return cls(token.strip(), ca)


def _read(path: pathlib.Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read the {what} at {path}: {exc}") from None


class Client:
    def __init__(
        self,
        master: str | None = None,
        user: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.master = master or default_master()
        self.user = user or current_user()
        creds = credentials or Credentials()
        if creds.ca is None:
            self._channel = grpc.insecure_channel(self.master, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(
                self.master,
                grpc.ssl_channel_credentials(creds.ca),
                options=[*CHANNEL_OPTIONS, *master_target_options()],
            )
        self.tls = creds.ca is not None
        self._stub = master_pb2_grpc.MasterStub(self._channel)
        meta = [("cloudai-user", self.user)]
        if creds.token:
            if not creds.token.isascii() or not creds.token.isprintable():
                raise InvalidArgument("the token has characters a token never has")
            meta.append(("authorization", f"Bearer {creds.token}"))
        self._meta = tuple(meta)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[..., T], request: Any, timeout: float = DEADLINE) -> T:
        try:
            return fn(request, timeout=timeout, metadata=self._meta)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Any) -> Exception:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # gRPC's "Method not found!"
            return self._unimplemented()
        err = from_rpc_error(exc, f"master at {self.master}")
        if isinstance(err, Unavailable) and "refused" not in err.message:
            if self.tls and "hostname verification" in (exc.details() or "").lower():
                return Unavailable(
                    f"the server at {self.master} is not the cloudai master: its certificate "
                    "is another's (a worker's port?)"
                )
            if self.tls and "handshake" in (exc.details() or "").lower():
                return Unavailable(
                    f"cannot reach master at {self.master}: TLS handshake failed (another "
                    "cluster's CA, or a master started with --insecure?)"
                )
            if not self.tls and "socket closed" in (exc.details() or "").lower():
                return Unavailable(
                    f"cannot reach master at {self.master} in plaintext: it may use TLS "
                    "(point CLOUDAI_HOME or CLOUDAI_CA at the cluster's ca.crt)"
                )
        return err

    def _unimplemented(self) -> CloudAIError:
        """The server does not know a call: not a master at all (GetClusterInfo, which every
        master answers, is unknown there too), or an older master."""
        try:
            self._stub.GetClusterInfo(master_pb2.ClusterInfoRequest(), timeout=3.0)
        except grpc.RpcError as probe:
            if probe.code() == grpc.StatusCode.UNIMPLEMENTED:
                return Unavailable(
                    f"the server at {self.master} is not a cloudai master (a worker's port?): "
                    f"point --master or CLOUDAI_MASTER at the master (default {DEFAULT_MASTER})"
                )
        return CloudAIError(
            f"the master at {self.master} does not know this call: it runs an older cloudai"
        )

    def health(self, timeout: float = 3.0) -> bool:
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def submit(self, spec: TaskSpec) -> Task:
        """Submit a task; the master makes its owner the caller."""
        reply = self._call(
            self._stub.SubmitTask, master_pb2.SubmitTaskRequest(spec=spec_to_pb(spec))
        )
        return task_from_pb(reply)

    def get_task(self, task_id: str) -> Task:
        return task_from_pb(self._call(self._stub.GetTask, types_pb2.TaskID(task_id=task_id)))

    def find_tasks(self, f: TaskFilter) -> TaskPage:
        """The tasks `f` matches that the caller may see, with how many match in all and how
        many of other users' it may not see. The master checks the filter."""
        reply = self._call(self._stub.ListTasks, task_filter_to_pb(f))
        found = [task_from_pb(t) for t in reply.tasks]
        return TaskPage(found, total=max(int(reply.total), len(found)), hidden=int(reply.hidden))

    def list_tasks(
        self,
        status: str = "",
        worker_id: str = "",
        limit: int = 0,
        owner: str = "",
        cancelled_by: str = "",
    ) -> list[Task]:
        return self.find_tasks(TaskFilter(status, worker_id, owner, cancelled_by, limit)).tasks

    def list_tasks_counted(
        self,
        status: str = "",
        worker_id: str = "",
        limit: int = 0,
        owner: str = "",
        cancelled_by: str = "",
    ) -> tuple[list[Task], int]:
        """The matching tasks the caller may see, and how many others match but are hidden."""
        page = self.find_tasks(TaskFilter(status, worker_id, owner, cancelled_by, limit))
        return page.tasks, page.hidden

    def list_tasks_page(
        self,
        status: str = "",
        worker_id: str = "",
        owner: str = "",
        cancelled_by: str = "",
        *,
        limit: int = 0,
    ) -> TaskPage:
        """The newest `limit` matching tasks (0: all), oldest first, with how many match."""
        return self.find_tasks(TaskFilter(status, worker_id, owner, cancelled_by, limit, True))

    def list_workers(self) -> list[Worker]:
        reply = self._call(self._stub.ListWorkers, master_pb2.ListWorkersRequest())
        return [worker_from_pb(w) for w in reply.workers]

    def register(self, worker_id: str, address: str) -> Worker:
        reply = self._call(
            self._stub.ManualRegisterWorker,
            master_pb2.ManualRegisterWorkerRequest(worker_id=worker_id, address=address),
        )
        return worker_from_pb(reply)

    def drain(self, worker_id: str, drain: bool = True) -> Worker:
        reply = self._call(
            self._stub.DrainWorker, master_pb2.DrainRequest(worker_id=worker_id, drain=drain)
        )
        return worker_from_pb(reply)

    def remove_worker(self, worker_id: str) -> Worker:
        """Forget a worker that runs no active task (admins)."""
        reply = self._call(
            self._stub.RemoveWorker, master_pb2.RemoveWorkerRequest(worker_id=worker_id)
        )
        return worker_from_pb(reply)

    def cancel(self, task_id: str) -> str:
        """The spec's CancelTask(TaskID): default stop; raises on a task it cannot cancel."""
        ack = self._call(
            self._stub.CancelTask, types_pb2.TaskID(task_id=task_id), timeout=CANCEL_DEADLINE
        )
        return str(ack.message)

    def cancel_many(
        self,
        task_ids: list[str],
        *,
        force: bool = False,
        grace: float | None = None,
        reason: str = "",
        stop_signal: str = "",
    ) -> list[CancelAck]:
        """Cancel tasks (in parallel, on the master); one ack per task, in order. `grace` and
        `stop_signal` (None, "": each task's own) override the task's."""
        request = master_pb2.CancelRequest(
            task_ids=task_ids, force=force, reason=reason, stop_signal=stop_signal
        )
        if grace is not None:
            request.grace_seconds = grace
        reply = self._call(self._stub.CancelTasks, request, timeout=CANCEL_DEADLINE)
        return [
            CancelAck(
                task_id=a.task_id,
                success=a.success,
                message=a.message,
                status=a.status,
                error_code=a.error_code,
                already=a.already,
                queued=a.queued,
            )
            for a in reply.acks
        ]

    def logs(self, task_id: str, follow: bool = False) -> Iterator[bytes]:
        stream = self._stub.StreamTaskLogs(
            types_pb2.LogsRequest(task_id=task_id, follow=follow),
            timeout=FOLLOW_DEADLINE if follow else 60.0,
            metadata=self._meta,
        )
        try:
            for chunk in stream:
                yield chunk.data
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        finally:
            stream.cancel()

    # ---- security -------------------------------------------------------------------------

    def whoami(self) -> master_pb2.UserInfo:
        reply: master_pb2.UserInfo = self._call(self._stub.WhoAmI, master_pb2.WhoAmIRequest())
        return reply

    def add_user(self, name: str, admin: bool = False) -> master_pb2.UserToken:
        reply: master_pb2.UserToken = self._call(
            self._stub.AddUser, master_pb2.AddUserRequest(name=name, admin=admin)
        )
        return reply

    def list_users(self) -> list[master_pb2.UserInfo]:
        return list(self._call(self._stub.ListUsers, master_pb2.ListUsersRequest()).users)

    def remove_user(self, name: str) -> master_pb2.UserInfo:
        reply: master_pb2.UserInfo = self._call(
            self._stub.RemoveUser, master_pb2.RemoveUserRequest(name=name)
        )
        return reply

    def join_token(self, ttl: float) -> master_pb2.JoinTokenResponse:
        reply: master_pb2.JoinTokenResponse = self._call(
            self._stub.CreateJoinToken, master_pb2.JoinTokenRequest(ttl_seconds=ttl)
        )
        return reply

    def ensure_reachable(self) -> None:
        if not self.health():
            raise Unavailable(f"cannot reach master at {self.master}")
