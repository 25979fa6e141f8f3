"""The MCP Tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`) with the official Python SDK
(`mcp` 2.x) against the real server over stdio, on the 2026-07-28 revision (`mode="auto"`).

mcp 2.3.0 ships no Tasks extension of its own (its `mcp_types` Task types are the 2025-11-25
experimental ones), but it has the generic client extension API (SEP-2133): an extension declares
its identifier, claims the `resultType: "task"` shape of `tools/call`, and sends `tasks/*` through
the SDK session (which stamps the per-request `_meta` with the declared capability). That is the
client here; everything on the wire is the SDK's.

Checks: a declaring client gets a handle from create_i2v_task and, after the server is stopped and
started again, polls tasks/get to the result get_task gives; the extension resolves a handle
transparently inside `Client.call_tool`; tasks/cancel cancels; a client not declaring it gets the
task itself from create_i2v_task and -32021 from tasks/get.

The providers are the test's fakes: run by tests/tasks.rs, which passes PIAPI_API_KEY,
I2V_MCP_PIAPI_BASE_URL (tasks that finish) and QUBICO_API_KEY, I2V_MCP_QUBICO_BASE_URL (tasks that
never finish) in the environment.

Usage: python python_tasks.py <path to i2v-mcp>
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from python_sdk import check, log, results  # the same check runner and report

EXT = "io.modelcontextprotocol/tasks"
HERE = Path(__file__).resolve().parent
BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("I2V_MCP_BIN", "")


# -- the extension, on the SDK's extension API ---------------------------------------------------


class TaskFields(types.Result):
    """The Task fields (SEP-2663), flattened into both results below."""

    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskHandle(TaskFields):
    """`CreateTaskResult`: `resultType: "task"` and the Task fields."""

    result_type: Literal["task"] = "task"


class DetailedTask(TaskFields):
    """`tasks/get` result: the Task fields plus `result` (completed) or `error` (failed)."""

    result_type: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Ack(types.Result):
    result_type: str | None = None


class TaskIdParams(types.RequestParams):
    task_id: str


class TasksGet(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class TasksCancel(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


async def tasks_get(session, task_id: str) -> DetailedTask:
    return await session.send_request(TasksGet(params=TaskIdParams(task_id=task_id)), DetailedTask)


async def tasks_cancel(session, task_id: str) -> None:
    await session.send_request(TasksCancel(params=TaskIdParams(task_id=task_id)), Ack)


async def poll(session, task_id: str, interval: float = 0.05) -> DetailedTask:
    while True:
        t = await tasks_get(session, task_id)
        if t.status in ("completed", "failed", "cancelled"):
            return t
        assert t.status == "working", t
        await anyio.sleep(interval)


async def resolve(handle: TaskHandle, ctx: ClaimContext) -> types.CallToolResult:
    done = await poll(ctx.session, handle.task_id)
    assert done.status == "completed" and done.result is not None, done
    return types.CallToolResult.model_validate(done.result)


class Tasks(ClientExtension):
    identifier = EXT

    def claims(self):
        return (ResultClaim(result_type="task", model=TaskHandle, resolve=resolve),)


# -- the server -----------------------------------------------------------------------------------


def workspace() -> dict:
    root = Path(tempfile.mkdtemp(prefix="i2v-interop-tasks-"))
    for d in ["images", "data", "videos", "home"]:
        (root / d).mkdir()
    shutil.copy(HERE.parent.parent / "examples" / "lighthouse.png", root / "images" / "lighthouse.png")
    (root / "config.toml").write_text("")
    passed = ("PIAPI_API_KEY", "I2V_MCP_PIAPI_BASE_URL", "QUBICO_API_KEY", "I2V_MCP_QUBICO_BASE_URL")
    missing = [k for k in passed if not os.environ.get(k)]
    if missing:
        raise SystemExit(f"python_tasks.py needs {missing} (run it through cargo test: tests/tasks.rs)")
    env = {k: os.environ[k] for k in passed}
    env.update(
        PATH=os.environ.get("PATH", ""),
        HOME=str(root / "home"),
        I2V_MCP_CONFIG=str(root / "config.toml"),
        I2V_MCP_DATA_DIR=str(root / "data"),
        I2V_MCP_OUTPUT_DIR=str(root / "videos"),
        I2V_MCP_ALLOWED_DIRS=str(root / "images"),
        I2V_MCP_POLL_FIRST_MS="30",
        I2V_MCP_POLL_MAX_MS="60",
        RUST_LOG="warn",
    )
    return {"root": root, "env": env, "image": str(root / "images" / "lighthouse.png")}


def client(ws: dict, tasks: bool) -> Client:
    params = StdioServerParameters(command=BIN, args=["serve"], env=ws["env"])
    return Client(params, mode="auto", extensions=[Tasks()] if tasks else None, read_timeout_seconds=60)


def args(ws: dict, provider: str) -> dict:
    return {"provider": provider, "image": ws["image"], "prompt": "slow zoom in"}


async def main() -> None:
    if not BIN:
        raise SystemExit("usage: python python_tasks.py <path to i2v-mcp>")
    ws = workspace()
    import mcp

    log(f"mcp {getattr(mcp, '__version__', '')} against {BIN}")
    handle: dict = {}

    async def create_handle():
        async with client(ws, tasks=True) as c:
            h = await c.session.call_tool("create_i2v_task", args(ws, "piapi"), allow_claimed=True)
            assert isinstance(h, TaskHandle), f"expected a task handle, got {h!r}"
            assert h.task_id.startswith("tsk_") and h.status == "working", h
            assert h.ttl_ms is None and h.poll_interval_ms, h
            handle["id"] = h.task_id
        # Leaving the block stops the server: the next client starts another process.

    await check("python/tasks: create_i2v_task answers a handle (2026-07-28, extension declared)", create_handle)

    async def after_restart():
        assert "id" in handle, "no handle"
        async with client(ws, tasks=True) as c:
            done = await poll(c.session, handle["id"])
            assert done.status == "completed", done
            sc = (done.result or {}).get("structuredContent") or {}
            assert sc.get("task_id") == handle["id"] and sc.get("status") == "succeeded", done
            assert (sc.get("video") or {}).get("sha256"), done
            got = (await c.call_tool("get_task", {"task_id": handle["id"]})).model_dump(
                by_alias=True, exclude_none=True, mode="json"
            )
            mine = dict(done.result or {})
            mine.pop("resultType", None)
            got.pop("resultType", None)
            assert mine == got, f"tasks/get result != get_task result:\n{mine}\n{got}"

    await check("python/tasks: tasks/get after a server restart reaches get_task's result", after_restart, 90)

    async def transparent():
        async with client(ws, tasks=True) as c:
            r = await c.call_tool("create_i2v_task", args(ws, "piapi"))
            sc = r.structured_content or {}
            assert sc.get("status") == "succeeded", r

    await check("python/tasks: Client.call_tool resolves the handle through the extension", transparent, 90)

    async def cancel():
        async with client(ws, tasks=True) as c:
            h = await c.session.call_tool("create_i2v_task", args(ws, "qubico"), allow_claimed=True)
            assert isinstance(h, TaskHandle), h
            await tasks_cancel(c.session, h.task_id)
            t = await tasks_get(c.session, h.task_id)
            assert t.status == "cancelled", t
            sc = (await c.call_tool("get_task", {"task_id": h.task_id})).structured_content or {}
            assert sc.get("status") == "cancelled", sc

    await check("python/tasks: tasks/cancel cancels", cancel)

    async def undeclared():
        async with client(ws, tasks=False) as c:
            r = await c.call_tool("create_i2v_task", args(ws, "qubico"))
            sc = r.structured_content or {}
            assert str(sc.get("task_id", "")).startswith("tsk_") and sc.get("status") == "queued", r
            try:
                await tasks_get(c.session, sc["task_id"])
            except MCPError as e:
                assert e.code == -32021, f"expected -32021, got {e.code}: {e}"
            else:
                raise AssertionError("tasks/get answered a client that did not declare the extension")

    await check("python/tasks: a client not declaring it gets the task and -32021 from tasks/get", undeclared)

    failed = [n for n, ok in results if not ok]
    log(f"{len(results) - len(failed)}/{len(results)} checks passed")
    shutil.rmtree(ws["root"], ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    anyio.run(main)
