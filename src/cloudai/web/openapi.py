"""The OpenAPI 3.0 description of the HTTP API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _sse(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }


_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
_WORKER_ID = {"name": "worker_id", "in": "path", "required": True, "schema": {"type": "string"}}
_404 = {"$ref": "#/components/responses/NotFound"}
_422 = {"$ref": "#/components/responses/Invalid"}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


_CANCEL_OPTIONS = {
    "force": {"type": "boolean", "default": False, "description": "SIGKILL at once"},
    "grace": {"type": "number", "minimum": 0, "description": "seconds before SIGKILL"},
    "reason": {"type": "string", "maxLength": 1024},
}
_WORKER = {
    "type": "object",
    "description": "A worker, as `cloudai workers -o json` shows it.",
    "required": ["worker_id", "state", "capacity", "allocated"],
    "properties": {
        "worker_id": {"type": "string"},
        "address": {"type": "string"},
        "state": {"type": "string", "enum": ["healthy", "unhealthy", "offline"]},
        "drained": {"type": "boolean"},
        "capacity": _ref("Resources"),
        "allocated": _ref("Resources"),
        "available": _ref("Resources"),
        "cpu_percent": {"type": "number", "nullable": True},
        "mem_used_gb": {"type": "number", "nullable": True},
        "last_heartbeat": {"type": "string", "format": "date-time", "nullable": True},
        "gpus": {"type": "array", "items": {"type": "object"}},
        "running_tasks": {"type": "array", "items": {"type": "string"}},
    },
}
_TASK = {
    "type": "object",
    "description": "A task, with the fields of `cloudai task show -o json`.",
    "required": ["task_id", "status", "owner"],
    "properties": {
        "task_id": {"type": "string"},
        "name": {"type": "string"},
        "image": {"type": "string"},
        "owner": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["pending", "running", "completed", "failed", "cancelled"],
        },
        "worker_id": {"type": "string", "nullable": True},
        "resources": _ref("Resources"),
        "created_at": {"type": "string", "format": "date-time", "nullable": True},
        "events": {"type": "array", "items": {"type": "object"}},
        "cancellation": {"type": "object", "nullable": True},
        "usage": {"type": "object"},
    },
}
_ACK = {
    "type": "object",
    "required": ["task_id", "success", "message"],
    "properties": {
        "task_id": {"type": "string"},
        "success": {"type": "boolean"},
        "message": {"type": "string"},
        "status": {"type": "string"},
        "error_code": {"type": "string", "description": "the gRPC status name of a failure"},
        "already": {"type": "boolean"},
        "queued": {"type": "boolean"},
    },
}
_PATHS: dict[str, Any] = {
    "/workers": {
        "get": {
            "summary": "List the workers",
            "operationId": "listWorkers",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"workers": {"type": "array", "items": _ref("Worker")}},
                    },
                    "the workers",
                ),
                **_ERRORS,
            },
        }
    },
    "/workers/{worker_id}/drain": {
        "post": {
            "summary": "Place no new task on a worker (admins)",
            "operationId": "drainWorker",
            "parameters": [_WORKER_ID],
            "responses": {"200": _json(_ref("Worker"), "the worker"), **_ERRORS, "404": _404},
        }
    },
    "/workers/{worker_id}/undrain": {
        "post": {
            "summary": "Place tasks on a worker again (admins)",
            "operationId": "undrainWorker",
            "parameters": [_WORKER_ID],
            "responses": {"200": _json(_ref("Worker"), "the worker"), **_ERRORS, "404": _404},
        }
    },
    "/tasks": {
        "get": {
            "summary": "List the tasks the caller may see, oldest first",
            "operationId": "listTasks",
            "parameters": [
                _query("status", "pending, running, completed, failed or cancelled"),
                _query("worker", "a worker's ID"),
                _query("owner", "a user's name"),
                _query("limit", "at most this many (0: all)", "integer"),
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "tasks": {"type": "array", "items": _ref("Task")},
                            "hidden": {
                                "type": "integer",
                                "description": "matching tasks of other users",
                            },
                            "total": {"type": "integer"},
                        },
                    },
                    "the tasks",
                ),
                **_ERRORS,
                "422": _422,
            },
        }
    },
    "/tasks/cancel": {
        "post": {
            "summary": "Cancel several tasks: one ack each",
            "operationId": "cancelTasks",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["task_ids"],
                            "properties": {
                                "task_ids": {"type": "array", "items": {"type": "string"}},
                                **_CANCEL_OPTIONS,
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"acks": {"type": "array", "items": _ref("Ack")}},
                    },
                    "one ack per task",
                ),
                **_ERRORS,
                "422": _422,
            },
        }
    },
    "/tasks/{task_id}": {
        "get": {
            "summary": "A task with its events, cancellation and usage",
            "operationId": "getTask",
            "parameters": [_TASK_ID],
            "responses": {
                "200": _json(_ref("Task"), "the task"),
                **_ERRORS,
                "404": _404,
                "422": _422,
            },
        }
    },
    "/tasks/{task_id}/cancel": {
        "post": {
            "summary": "Cancel a task",
            "operationId": "cancelTask",
            "parameters": [_TASK_ID],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": _CANCEL_OPTIONS}
                    }
                },
            },
            "responses": {
                "200": _json(_ref("Ack"), "cancelled (or already)"),
                **_ERRORS,
                "404": _404,
                "409": _json(_ref("Ack"), "the task already ended"),
                "422": _422,
            },
        }
    },
    "/tasks/{task_id}/logs": {
        "get": {
            "summary": "A task's output as server-sent events (`log`, then `end`)",
            "operationId": "taskLogs",
            "parameters": [_TASK_ID, _query("follow", "1: keep streaming until the task ends")],
            "responses": {
                "200": _sse(
                    "`event: log` with {data}; `event: end`; `event: error` with {message}"
                ),
                **_ERRORS,
                "404": _404,
            },
        }
    },
    "/events": {
        "get": {
            "summary": "Task and worker changes as server-sent events",
            "operationId": "events",
            "responses": {
                "200": _sse(
                    "`hello`, then `task` ({task_id, event, task}), `worker` "
                    "(a Worker), `worker_removed`, `resync`"
                ),
                **_ERRORS,
            },
        }
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "cloudai master HTTP API",
        "version": "1",
        "description": "The web console's API; scripts may use it too. Authenticate with "
        "`Authorization: Bearer TOKEN` (a user token, as the CLI's).",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Resources": {
                "type": "object",
                "properties": {
                    "cpu": {"type": "number"},
                    "mem_gb": {"type": "number"},
                    "storage_gb": {"type": "number"},
                    "gpu": {"type": "integer"},
                },
            },
            "Worker": _WORKER,
            "Task": _TASK,
            "Ack": _ACK,
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["status", "message"],
                        "properties": {
                            "status": {"type": "integer"},
                            "message": {"type": "string"},
                        },
                    }
                },
            },
        },
        "responses": {
            "Unauthenticated": _error_response("no token, or an unknown one"),
            "Forbidden": _error_response("not permitted (not the owner, not an admin, no CSRF)"),
            "NotFound": _error_response("no such task or worker"),
            "Invalid": _error_response("bad input"),
        },
    },
}
