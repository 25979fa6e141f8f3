// The TypeScript SDK 2.x client (@modelcontextprotocol/client) against the real server: the
// 2025 era over stdio, streamable HTTP and legacy SSE, and the 2026-07-28 era (server/discover,
// per-request _meta, subscriptions/listen) over stdio and streamable HTTP.
// Usage: node sdk2.mjs <path to i2v-mcp>
import fs from "node:fs";
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { BIN, assert, check, finish, onCleanup, scenario, startHttp, watchdog, within, workspace } from "./common.mjs";

const LABEL = "sdk2";
const VERSION = JSON.parse(
  fs.readFileSync(new URL("./node_modules/@modelcontextprotocol/client/package.json", import.meta.url)),
).version;
console.log(`@modelcontextprotocol/client ${VERSION}, node ${process.version}`);
watchdog(200_000, LABEL);

function adapter(client, { modern }) {
  const subs = [];
  onCleanup(async () => {
    for (const s of subs) await s.close();
  });
  return {
    list: () => within(15_000, "tools/list", client.listTools()),
    call: (name, args, { onprogress } = {}) =>
      within(
        60_000,
        `tools/call ${name}`,
        client.callTool(
          { name, arguments: args },
          { timeout: 60_000, ...(onprogress ? { onprogress, resetTimeoutOnProgress: true } : {}) },
        ),
      ),
    read: (uri) => within(15_000, `resources/read ${uri}`, client.readResource({ uri }, { cacheMode: "bypass" })),
    // 2026-07-28 has no resources/subscribe: a subscriptions/listen stream carries the updates.
    subscribe: async (uri) => {
      if (!modern) return within(15_000, `resources/subscribe ${uri}`, client.subscribeResource({ uri }));
      const sub = await within(15_000, `subscriptions/listen ${uri}`, client.listen({ resourceSubscriptions: [uri] }));
      subs.push(sub);
      assert.deepEqual(sub.honoredFilter?.resourceSubscriptions, [uri], `honored filter: ${JSON.stringify(sub.honoredFilter)}`);
    },
    onUpdated: (fn) => client.setNotificationHandler("notifications/resources/updated", (n) => fn(n.params.uri)),
  };
}

async function session(label, makeTransport, kind, { modern = false, http, render = true } = {}) {
  const ws = workspace();
  await check(`${label}: session`, async () => {
    const server = http ? await startHttp(ws) : undefined;
    const client = new Client(
      { name: `i2v-interop-${label}`, version: "1.0.0" },
      modern ? { versionNegotiation: { mode: { pin: "2026-07-28" } } } : {},
    );
    await within(20_000, `${label}: connect`, client.connect(makeTransport(ws, server)));
    onCleanup(() => client.close());
    if (modern) {
      await check(`${label}: negotiated 2026-07-28 (server/discover)`, () => {
        assert.equal(client.getProtocolEra(), "modern");
        assert.equal(client.getNegotiatedProtocolVersion(), "2026-07-28");
      });
    }
    await scenario(label, ws, adapter(client, { modern }), kind, { render });
    await client.close();
    await server?.stop();
  });
}

const stdio = (ws) => new StdioClientTransport({ command: BIN, args: ["serve"], env: ws.env, stderr: "ignore" });

await session(`${LABEL}/stdio`, stdio, "stdio");
await session(`${LABEL}/http`, (_, s) => new StreamableHTTPClientTransport(new URL(s.mcp)), "http", { http: true });
// SSE and 2026-07-28 over stdio without the render: sdk1/sse and sdk2/http@2026-07-28 cover those paths.
await session(`${LABEL}/sse`, (_, s) => new SSEClientTransport(new URL(s.sse)), "sse", { http: true, render: false });
await session(`${LABEL}/stdio@2026-07-28`, stdio, "stdio", { modern: true, render: false });
await session(`${LABEL}/http@2026-07-28`, (_, s) => new StreamableHTTPClientTransport(new URL(s.mcp)), "http", {
  modern: true,
  http: true,
});

await finish(LABEL);
