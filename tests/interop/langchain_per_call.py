"""LangChain's `langchain-mcp-adapters` (issue 26) against the real server, as a new user runs it:
the default `MultiServerMCPClient` with a stdio connection starts a new `i2v-mcp serve` for every
tool call and stops it after. Checks that two tool calls at once both succeed (two servers on one
data dir), that a create in one call and a wait in the next (another process) see the task
finish, and how long a per-call server takes from spawn to its answer.

It runs in its own venv (`.venv-langchain`, requirements-langchain.txt): the adapters need the
`mcp` 1.x SDK, the other Python checks the 2.x one.

Usage: python langchain_per_call.py <path to i2v-mcp>
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from importlib.metadata import version
from pathlib import Path

from langchain_mcp_adapters.client import MultiServerMCPClient

HERE = Path(__file__).resolve().parent
BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("I2V_MCP_BIN", "")
LABEL = "langchain"
results: list[tuple[str, bool]] = []
STARTED = time.monotonic()


def log(s: str) -> None:
    print(s, flush=True)


async def check(name: str, fn, timeout: float = 90):
    t0 = time.monotonic()
    try:
        v = await asyncio.wait_for(fn(), timeout)
        results.append((name, True))
        log(f"ok   {name} ({(time.monotonic() - t0) * 1000:.0f} ms)")
        return v
    except BaseException as e:  # noqa: BLE001 - a failed check is reported, not raised
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        results.append((name, False))
        msg = str(e) if isinstance(e, AssertionError) else "".join(traceback.format_exception(e))[-3000:]
        log(f"FAIL {name} ({(time.monotonic() - t0) * 1000:.0f} ms)\n     " + msg.replace("\n", "\n     "))
        return None


def workspace() -> dict:
    root = Path(tempfile.mkdtemp(prefix="i2v-interop-lc-"))
    for d in ["images", "data", "videos", "home"]:
        (root / d).mkdir()
    shutil.copy(HERE.parent.parent / "examples" / "lighthouse.png", root / "images" / "lighthouse.png")
    (root / "config.toml").write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.endswith("_API_KEY") or k.startswith("I2V_MCP_") or k.split("_")[0] in ("PIAPI", "QUBICO", "NOVITA", "APIKLEY"))
    }
    env.update(
        HOME=str(root / "home"),
        I2V_MCP_CONFIG=str(root / "config.toml"),
        I2V_MCP_DATA_DIR=str(root / "data"),
        I2V_MCP_OUTPUT_DIR=str(root / "videos"),
        I2V_MCP_ALLOWED_DIRS=str(root / "images"),
        RUST_LOG="warn",
    )
    return {"root": root, "env": env, "image": str(root / "images" / "lighthouse.png")}


def task_of(content) -> dict:
    """The task JSON of a tool's text content (the adapters hand back the text blocks)."""
    if isinstance(content, tuple):  # (content, artifact) with response_format content_and_artifact
        content = content[0]
    if isinstance(content, list):
        texts = [c["text"] if isinstance(c, dict) else str(c) for c in content if not isinstance(c, dict) or c.get("type") == "text"]
        content = "".join(texts)
    body = json.loads(content)
    assert "error" not in body, f"the tool failed: {content[:600]}"
    return body


async def main() -> int:
    ws = workspace()
    client = MultiServerMCPClient(
        {"i2v": {"command": BIN, "args": ["serve"], "env": ws["env"], "transport": "stdio"}}
    )
    log(f"{LABEL}: langchain-mcp-adapters {version('langchain-mcp-adapters')}, mcp {version('mcp')}")
    tools = await check("get_tools (a server of its own)", client.get_tools)
    if not tools:
        return 1
    by_name = {t.name: t for t in tools}
    create, get = by_name["create_i2v_task"], by_name["get_task"]
    timings: list[float] = []

    async def timed(tool, args):
        t0 = time.monotonic()
        out = await tool.ainvoke(args)
        timings.append(time.monotonic() - t0)
        return task_of(out)

    def args(prompt: str) -> dict:
        return {"image": ws["image"], "prompt": prompt, "provider": "local", "duration_seconds": 5, "resolution": "480p"}

    async def two_at_once():
        # Parallel tool calls: two servers on one data dir at the same moment.
        a, b = await asyncio.gather(timed(create, args("pan left")), timed(create, args("zoom in")))
        assert a["task_id"] != b["task_id"], (a, b)
        for t in (a, b):
            assert t["status"] in ("queued", "running", "succeeded"), t
        return a, b

    pair = await check("two create_i2v_task calls at once both succeed", two_at_once)

    async def create_then_wait():
        t = await timed(create, args("tilt up"))
        # The next call is another process: it must see the task at once and see it finish.
        done = await timed(get, {"task_id": t["task_id"], "wait_seconds": 60})
        assert done["status"] == "succeeded", done
        path = (done.get("video") or {}).get("local_path")
        assert path and Path(path).is_file(), done
        return done

    await check("create in one call, wait in the next: the task finishes", create_then_wait)

    async def both_finish():
        assert pair, "the parallel creates failed"
        done = await asyncio.gather(*(timed(get, {"task_id": t["task_id"], "wait_seconds": 60}) for t in pair))
        for d in done:
            assert d["status"] == "succeeded", d
        return done

    await check("two waits at once: both parallel tasks finish", both_finish)

    async def listed_once():
        listed = task_of(await by_name["list_tasks"].ainvoke({}))
        ids = [t["task_id"] for t in listed["tasks"]]
        assert len(ids) == len(set(ids)) == 3, f"each create made one task: {ids}"
        videos = sorted(p.name for p in (ws["root"] / "videos").glob("*.mp4"))
        assert len(videos) == 3, videos

    await check("three creates, three tasks, three videos", listed_once)

    quick = sorted(timings)
    if quick:
        log(
            f"{LABEL}: {len(timings)} per-call servers, spawn to answer (incl. any wait): "
            f"min {quick[0] * 1000:.0f} ms, median {statistics.median(quick) * 1000:.0f} ms"
        )
    failed = [n for n, passed in results if not passed]
    log(
        f"{LABEL}: {len(results) - len(failed)}/{len(results)} checks passed in {time.monotonic() - STARTED:.1f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    shutil.rmtree(ws["root"], ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    if not BIN or not os.path.exists(BIN):
        print("usage: python langchain_per_call.py <path to i2v-mcp>", file=sys.stderr)
        sys.exit(2)

    async def bounded() -> int:
        try:
            return await asyncio.wait_for(main(), 240)
        except asyncio.TimeoutError:
            log(f"FAIL {LABEL}: watchdog fired after 240 s")
            return 1

    sys.exit(asyncio.run(bounded()))
