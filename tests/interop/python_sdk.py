"""The official Python SDK (`mcp` on PyPI) against the real server: stdio (the SDK's default
`mode="auto"`, which negotiates 2026-07-28 through server/discover) and streamable HTTP (the 2025
initialize handshake, `mode="legacy"`), plus raw JSON-RPC lines over stdio for what no SDK sends
(an integer written as `5.0`, non-object `arguments`, 2026-07-28 subscriptions/listen).

Usage: python python_sdk.py <path to i2v-mcp>
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import warnings
from importlib.metadata import version
from pathlib import Path

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning

# resources/subscribe is deprecated in 2026-07-28; the 2025-era session here uses it on purpose.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

HERE = Path(__file__).resolve().parent
BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("I2V_MCP_BIN", "")
LABEL = "python"
UNKNOWN_TASK = "tsk_00000000000000000000000000000000"
TOOLS = sorted(
    ["cancel_task", "create_i2v_task", "estimate_cost", "get_task", "list_loras", "list_models", "list_tasks"]
)
results: list[tuple[str, bool]] = []
STARTED = time.monotonic()
procs: list[subprocess.Popen] = []


def log(s: str) -> None:
    print(s, flush=True)


async def check(name: str, fn, timeout: float = 60):
    t0 = time.monotonic()
    try:
        with anyio.fail_after(timeout):
            v = await fn()
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


def blocked(name: str, why: str) -> None:
    results.append((name, False))
    log(f"FAIL {name}: not run, {why}")


def workspace() -> dict:
    root = Path(tempfile.mkdtemp(prefix="i2v-interop-py-"))
    example = HERE.parent.parent / "examples" / "lighthouse.png"
    ws = {"root": root}
    for d in ["images", "outside", "data", "videos", "home"]:
        (root / d).mkdir()
    shutil.copy(example, root / "images" / "lighthouse.png")
    shutil.copy(example, root / "outside" / "lighthouse.png")
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
    ws.update(env=env, image=str(root / "images" / "lighthouse.png"), outside=str(root / "outside" / "lighthouse.png"))
    return ws


# -- the contract ---------------------------------------------------------------------------------


def wire(result) -> dict:
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")


def assert_compact(text: str) -> None:
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch.isspace():
            raise AssertionError(f"content[0].text must be compact JSON (whitespace at {i}): {text[:300]}")
        i += 1


def assert_tool_error(r: dict, category: str) -> dict:
    assert r.get("isError") is True, f"expected isError: true, got {r}"
    assert "structuredContent" not in r, f"an error result must carry no structuredContent: {r}"
    first = (r.get("content") or [{}])[0]
    assert first.get("type") == "text", f"content[0] must be text: {r}"
    body = json.loads(first["text"])
    assert_compact(first["text"])
    err = body.get("error") or {}
    assert err.get("category") == category, f"category: {first['text']}"
    assert isinstance(err.get("message"), str) and err["message"], f"message: {first['text']}"
    assert isinstance(err.get("retryable"), bool), f"retryable: {first['text']}"
    return err


def assert_tool_ok(r: dict) -> dict:
    assert r.get("isError") is not True, f"expected success, got {r}"
    sc = r.get("structuredContent")
    assert isinstance(sc, dict), f"no structuredContent: {r}"
    first = (r.get("content") or [{}])[0]
    assert first.get("type") == "text", f"content[0] must be text: {r}"
    try:
        parsed = json.loads(first["text"])
    except ValueError:
        raise AssertionError(f"content[0].text is not JSON (expected the JSON of structuredContent): {first['text']}")
    assert parsed == sc, f"content[0].text != structuredContent:\n{first['text']}\n{json.dumps(sc)}"
    assert_compact(first["text"])
    return sc


def task_of(r: dict) -> dict | None:
    if isinstance(r.get("structuredContent"), dict):
        return r["structuredContent"]
    try:
        return json.loads(r["content"][0]["text"])
    except (KeyError, IndexError, ValueError, TypeError):
        return None


# -- one SDK session ------------------------------------------------------------------------------


async def scenario(label: str, ws: dict, client: Client, kind: str, modern: bool) -> None:
    async def tools_list():
        lst = await client.list_tools()
        names = sorted(t.name for t in lst.tools)
        assert names == TOOLS, names
        get = next(t for t in lst.tools if t.name == "get_task")
        mx = get.input_schema.get("properties", {}).get("wait_seconds", {}).get("maximum")
        assert isinstance(mx, (int, float)) and mx <= 50, f"get_task.wait_seconds maximum must be <= 50, is {mx}"

    await check(f"{label}: tools/list", tools_list)

    async def call(name: str, args: dict, progress=None) -> dict:
        return wire(await client.call_tool(name, args, read_timeout_seconds=60, progress_callback=progress))

    async def e1():
        assert_tool_error(await call("get_task", {"task_id": UNKNOWN_TASK}), "not_found")

    async def e2():
        assert_tool_error(
            await call("create_i2v_task", {"provider": "local", "image": ws["outside"], "prompt": "slow zoom in"}),
            "invalid_input",
        )

    async def e3():
        assert_tool_error(
            await call("create_i2v_task", {"provider": "piapi", "image": ws["image"], "prompt": "slow zoom in"}), "auth"
        )

    await check(f"{label}: error not_found (get_task unknown id)", e1)
    await check(f"{label}: error invalid_input (image outside the allowed dirs)", e2)
    await check(f"{label}: error auth (piapi without a key)", e3)

    async def models():
        r = await client.read_resource("i2v://models")
        assert "camera-preview" in r.contents[0].text

    await check(f"{label}: resources/read i2v://models", models)

    created: dict = {}

    async def create():
        created.update(await call("create_i2v_task", {"provider": "local", "image": ws["image"], "prompt": "slow zoom in"}))
        t = task_of(created) or {}
        assert str(t.get("task_id", "")).startswith("tsk_"), created
        assert t.get("status") in ("queued", "running", "succeeded"), t

    await check(f"{label}: create_i2v_task local", create)
    task = task_of(created) if created else None
    if not task or "task_id" not in task:
        for n in ["result shape", "subscribe", "get_task wait with progress", "resources/read task", "updated", "link"]:
            blocked(f"{label}: {n}", "create failed")
        return
    await check(f"{label}: create result is structuredContent + its compact JSON text", lambda: _async(assert_tool_ok, created))
    uri = f"i2v://tasks/{task['task_id']}"

    updates: list[str] = ws.setdefault("updates", [])
    async with anyio.create_task_group() as tg:
        if modern:
            # 2026-07-28: no resources/subscribe; a subscriptions/listen stream carries the updates.
            ready = anyio.Event()

            async def listener():
                try:
                    async with client.listen(resource_subscriptions=[uri]) as sub:
                        assert list(sub.honored.resource_subscriptions or []) == [uri], f"honored: {sub.honored}"
                        ready.set()
                        async for ev in sub:
                            u = getattr(ev, "uri", None)
                            if u:
                                updates.append(str(u))
                except Exception as e:  # noqa: BLE001
                    ws["listen_error"] = e
                    ready.set()

            tg.start_soon(listener)

            async def subscribed():
                await ready.wait()
                if "listen_error" in ws:
                    raise AssertionError(f"subscriptions/listen failed: {ws['listen_error']!r}")

            await check(f"{label}: subscriptions/listen {uri}", subscribed, timeout=15)
        else:
            await check(f"{label}: resources/subscribe {uri}", lambda: client.subscribe_resource(uri), timeout=15)

        progress = []
        last: dict = {}

        async def on_progress(p, total, message):
            progress.append(p)

        async def wait():
            for _ in range(4):
                last.clear()
                last.update(await call("get_task", {"task_id": task["task_id"], "wait_seconds": 30}, on_progress))
                t = task_of(last) or {}
                if t.get("status") == "succeeded":
                    link = next((c for c in last.get("content", []) if c.get("type") == "resource_link"), None)
                    assert link, f"no resource_link block: {last}"
                    assert link.get("mimeType") == "video/mp4", link
                    assert progress, "no notifications/progress arrived"
                    return link
                assert t.get("status") in ("queued", "running"), last
            raise AssertionError(f"not succeeded after 4 waits: {last}")

        link = await check(f"{label}: get_task wait_seconds with progress until succeeded", wait, timeout=130)
        if last:
            await check(f"{label}: get_task result is structuredContent + its compact JSON text", lambda: _async(assert_tool_ok, last))

        async def read_task():
            r = await client.read_resource(uri)
            body = json.loads(r.contents[0].text)
            assert body.get("task_id") == task["task_id"], body

        await check(f"{label}: resources/read {uri}", read_task)

        async def updated():
            end = time.monotonic() + 5
            while uri not in updates and time.monotonic() < end:
                await anyio.sleep(0.05)
            assert uri in updates, f"no notifications/resources/updated for {uri} (got {updates})"

        await check(f"{label}: notifications/resources/updated after subscribe", updated)
        tg.cancel_scope.cancel()

    if not link:
        blocked(f"{label}: resources/read of the resource_link", "the task did not succeed")
        return

    async def read_link():
        if kind == "stdio":
            assert link["uri"].startswith("file://"), link
        else:
            assert link["uri"].startswith("http://127.0.0.1:") and "/videos/" in link["uri"], link
        r = wire(await client.read_resource(link["uri"]))
        c = r["contents"][0]
        assert c.get("mimeType") == "video/mp4", {k: v for k, v in c.items() if k != "blob"}
        assert isinstance(c.get("blob"), str) and len(c["blob"]) > 1000, "a base64 blob"
        assert base64.b64decode(c["blob"][:64])[4:8] == b"ftyp", "an MP4"

    await check(f"{label}: resources/read of the resource_link ({kind})", read_link)


async def _async(fn, *a):
    return fn(*a)


def on_message(ws: dict):
    async def handler(msg) -> None:
        if isinstance(msg, types.ResourceUpdatedNotification):
            ws.setdefault("updates", []).append(str(msg.params.uri))

    return handler


# -- raw JSON-RPC lines over stdio ----------------------------------------------------------------


class Raw:
    """The binary over stdio with hand-written JSON-RPC lines."""

    def __init__(self, env: dict):
        self.p = subprocess.Popen(
            [BIN, "serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        procs.append(self.p)
        self.q: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        import threading

        def pump():
            for line in self.p.stdout:
                loop.call_soon_threadsafe(self.q.put_nowait, line.decode())
            loop.call_soon_threadsafe(self.q.put_nowait, None)

        threading.Thread(target=pump, daemon=True).start()
        self.seen: list[dict] = []

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    async def until(self, pred, timeout: float = 15) -> dict:
        with anyio.fail_after(timeout):
            while True:
                line = await self.q.get()
                if line is None:
                    raise AssertionError(f"server closed stdout; seen {self.seen[-5:]}")
                msg = json.loads(line)
                self.seen.append(msg)
                if pred(msg):
                    return msg

    async def response(self, id_, timeout: float = 15) -> dict:
        return await self.until(lambda m: m.get("id") == id_ and ("result" in m or "error" in m), timeout)

    async def init(self) -> None:
        self.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
        await self.response(0)
        self.send('{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def close(self) -> None:
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(3)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(3)


async def raw_checks(ws: dict) -> None:
    label = f"{LABEL}/raw-stdio"
    raw = Raw(ws["env"])
    try:
        await check(f"{label}: initialize", raw.init)

        async def float_int():
            # `5.0` for an integer parameter: the JSON a Python/JS host may well produce.
            raw.send('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_task","arguments":{"task_id":"%s","wait_seconds":5.0}}}' % UNKNOWN_TASK)
            m = await raw.response(1)
            assert "result" in m, f"wait_seconds 5.0 refused: {m}"
            assert_tool_error(m["result"], "not_found")

        await check(f"{label}: get_task wait_seconds 5.0 (float for an integer) accepted", float_int)

        async def bad_args():
            raw.send('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_task","arguments":[]}}')
            m = await raw.response(2)
            assert m.get("error", {}).get("code") == -32602, f"expected JSON-RPC error -32602, got {m}"

        await check(f"{label}: tools/call with arguments [] is -32602", bad_args)
    finally:
        raw.close()

    # 2026-07-28: if resources.subscribe is advertised, subscriptions/listen must work.
    raw = Raw(ws["env"])
    try:
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        }

        async def discover_listen():
            raw.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}))
            d = await raw.response(1)
            caps = d["result"]["capabilities"]
            if not (caps.get("resources") or {}).get("subscribe"):
                log(f"     (resources.subscribe not advertised on 2026-07-28: {caps.get('resources')})")
                return
            uri = f"i2v://tasks/{UNKNOWN_TASK}"
            raw.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen", "params": {
                "_meta": meta, "notifications": {"resourceSubscriptions": [uri]}}}))
            m = await raw.until(lambda m: m.get("id") == 2 or m.get("method") == "notifications/subscriptions/acknowledged")
            assert m.get("error", {}).get("code") != -32601, f"resources.subscribe advertised but listen is -32601: {m}"
            assert "error" not in m, f"listen failed: {m}"

        await check(f"{label}@2026-07-28: subscribe advertised => subscriptions/listen works", discover_listen)
    finally:
        raw.close()


# -- main -----------------------------------------------------------------------------------------


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def start_http(ws: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    p = subprocess.Popen(
        [BIN, "serve", "--http", f"127.0.0.1:{port}"], env=ws["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    procs.append(p)
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if p.poll() is not None:
            raise AssertionError(f"server exited with {p.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return p, base
        except OSError:
            await anyio.sleep(0.1)
    raise AssertionError("server did not come up")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(3)


async def main() -> int:
    log(f"mcp {version('mcp')}, Python {sys.version.split()[0]}")
    wss = []

    # stdio, the SDK's default negotiation ("auto": server/discover, else initialize)
    ws = workspace()
    wss.append(ws)

    async def stdio_session():
        params = StdioServerParameters(command=BIN, args=["serve"], env=ws["env"])
        async with Client(params, read_timeout_seconds=60, message_handler=on_message(ws), cache=None) as client:
            log(f"     (stdio negotiated {client.protocol_version})")
            await scenario(f"{LABEL}/stdio@{client.protocol_version}", ws, client, "stdio", modern=client.protocol_version >= "2026")

    await check(f"{LABEL}/stdio: session", stdio_session, timeout=150)

    # streamable HTTP, the 2025 handshake (resources/subscribe)
    ws2 = workspace()
    wss.append(ws2)

    async def http_session():
        p, base = await start_http(ws2)
        try:
            async with Client(f"{base}/mcp", mode="legacy", read_timeout_seconds=60, message_handler=on_message(ws2), cache=None) as client:
                log(f"     (http negotiated {client.protocol_version})")
                await scenario(f"{LABEL}/http@{client.protocol_version}", ws2, client, "http", modern=False)
        finally:
            stop(p)

    await check(f"{LABEL}/http: session", http_session, timeout=150)

    await check(f"{LABEL}/raw-stdio: session", lambda: raw_checks(ws), timeout=60)

    for p in procs:
        if p.poll() is None:
            p.kill()
    for w in wss:
        shutil.rmtree(w["root"], ignore_errors=True)
    failed = [n for n, ok in results if not ok]
    log(
        f"{LABEL}: {len(results) - len(failed)}/{len(results)} checks passed in {time.monotonic() - STARTED:.1f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def run(main, label: str, seconds: float) -> None:
    """Run `main` under a watchdog (a hung client can never hang `cargo test`), kill what it
    started, and exit with its code."""

    async def bounded() -> int:
        with anyio.move_on_after(seconds) as scope:
            return await main()
        if scope.cancelled_caught:
            log(f"FAIL {label}: watchdog fired after {seconds:.0f} s")
        return 1

    try:
        code = anyio.run(bounded)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    sys.exit(code)


if __name__ == "__main__":
    if not BIN or not os.path.exists(BIN):
        print("usage: python python_sdk.py <path to i2v-mcp>", file=sys.stderr)
        sys.exit(2)
    run(main, "python", 200)
