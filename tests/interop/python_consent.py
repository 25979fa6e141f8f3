"""Spend consent (issue 15 item 2) with the official Python SDK (`mcp` 2.x): `[budget]
confirm_above_usd` below the price of a create, asked through elicitation. On 2026-07-28 (stdio,
`mode="auto"`: server/discover) the SDK drives the InputRequiredResult rounds; on 2025-11-25
(stdio and streamable HTTP, `mode="legacy"`) the server sends `elicitation/create` while the call
waits.

The paid create is the free local preview priced at $0.50 under [pricing] (no provider needed):
"one create" is one task in the journal, "zero creates" none.

Usage: python python_consent.py <path to i2v-mcp>
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters

import python_sdk as base

LABEL = "python-consent"
CONFIG = """
[pricing."local/camera-preview"]
per_video_usd = 0.5

[budget]
confirm_above_usd = 0.1
"""


def person(action: str | None, asked: list[str]):
    """An elicitation callback answering `action`, or None: a client without elicitation."""
    if action is None:
        return None

    async def answer(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        schema = params.requested_schema
        assert schema["properties"]["approve"]["type"] == "boolean", schema
        content = {"approve": True} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)

    return answer


def error_of(result) -> dict:
    assert result.is_error, f"expected an error, got {result}"
    return json.loads(result.content[0].text)["error"]


async def tasks(client) -> int:
    r = await client.call_tool("list_tasks", {})
    return len(r.structured_content["tasks"])


async def era(label: str, ws: dict, connect) -> None:
    create = {"image": ws["image"], "prompt": "slow pan", "provider": "local", "wait_seconds": 0}

    async def accepted():
        asked: list[str] = []
        async with connect(person("accept", asked)) as client:
            before = await tasks(client)
            r = await client.call_tool("create_i2v_task", create)
            assert not r.is_error, r.content[0].text
            assert r.structured_content["status"] in ("queued", "running", "succeeded"), r.structured_content
            assert len(asked) == 1, asked
            for part in ("local/camera-preview", "$0.50", "Spent today"):
                assert part in asked[0], asked[0]
            assert await tasks(client) == before + 1

    async def declined(action: str):
        asked: list[str] = []
        async with connect(person(action, asked)) as client:
            before = await tasks(client)
            e = error_of(await client.call_tool("create_i2v_task", create))
            assert e["category"] == "budget", e
            assert len(asked) == 1, asked
            assert await tasks(client) == before, "a declined create was journaled"

    async def without():
        async with connect(None) as client:
            before = await tasks(client)
            e = error_of(await client.call_tool("create_i2v_task", create))
            assert e["category"] == "budget", e
            assert "max_cost_usd 0.5" in e.get("next_step", ""), e
            assert await tasks(client) == before
            r = await client.call_tool("create_i2v_task", {**create, "max_cost_usd": 0.5})
            assert not r.is_error, r.content[0].text
            assert await tasks(client) == before + 1

    await base.check(f"{label}: accept -> one create", accepted)
    await base.check(f"{label}: decline -> budget error, nothing created", lambda: declined("decline"))
    await base.check(f"{label}: cancel -> budget error, nothing created", lambda: declined("cancel"))
    await base.check(f"{label}: no elicitation -> budget error with next step", without)


def workspace() -> dict:
    ws = base.workspace()
    (ws["root"] / "config.toml").write_text(CONFIG)
    return ws


async def main() -> int:
    ws = workspace()

    def stdio(callback):
        params = StdioServerParameters(command=base.BIN, args=["serve"], env=ws["env"])
        return Client(params, read_timeout_seconds=60, elicitation_callback=callback, cache=None)

    async with stdio(None) as probe:
        version = probe.protocol_version
    base.log(f"     (stdio negotiated {version})")
    await base.check(f"{LABEL}/stdio: negotiated 2026-07-28", _expect(version, "2026-07-28"))
    await era(f"{LABEL}/stdio@{version}", ws, stdio)

    def stdio_legacy(callback):
        params = StdioServerParameters(command=base.BIN, args=["serve"], env=ws["env"])
        return Client(params, mode="legacy", read_timeout_seconds=60, elicitation_callback=callback, cache=None)

    await era(f"{LABEL}/stdio@legacy", ws, stdio_legacy)

    ws2 = workspace()
    p, url = await base.start_http(ws2)
    try:

        def http(callback):
            return Client(f"{url}/mcp", mode="legacy", read_timeout_seconds=60, elicitation_callback=callback, cache=None)

        await era(f"{LABEL}/http@legacy", ws2, http)
    finally:
        base.stop(p)

    for w in (ws, ws2):
        shutil.rmtree(w["root"], ignore_errors=True)
    failed = [n for n, ok in base.results if not ok]
    base.log(f"{LABEL}: {len(base.results) - len(failed)}/{len(base.results)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _expect(got, want):
    async def check():
        assert got == want, f"{got} != {want}"

    return check


if __name__ == "__main__":
    if not base.BIN or not os.path.exists(base.BIN):
        print("usage: python python_consent.py <path to i2v-mcp>", file=sys.stderr)
        sys.exit(2)

    base.run(main, LABEL, 150)
