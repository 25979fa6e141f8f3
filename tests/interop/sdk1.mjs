// The TypeScript SDK 1.x client (@modelcontextprotocol/sdk) against the real server: stdio,
// streamable HTTP and the legacy HTTP+SSE transport, plus the roots race over stdio.
// Usage: node sdk1.mjs <path to i2v-mcp>
import fs from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import {
  CallToolResultSchema,
  ListRootsRequestSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import {
  BIN, assert, taskOf, check, fileUri, finish, onCleanup, scenario, startHttp, watchdog, within, workspace,
} from "./common.mjs";

const LABEL = "sdk1";
const VERSION = JSON.parse(fs.readFileSync(new URL("./node_modules/@modelcontextprotocol/sdk/package.json", import.meta.url))).version;
console.log(`@modelcontextprotocol/sdk ${VERSION}, node ${process.version}`);
watchdog(200_000, LABEL);

function adapter(client) {
  return {
    list: () => within(15_000, "tools/list", client.listTools()),
    call: (name, args, { onprogress } = {}) =>
      within(
        60_000,
        `tools/call ${name}`,
        client.callTool({ name, arguments: args }, CallToolResultSchema, {
          timeout: 60_000,
          ...(onprogress ? { onprogress, resetTimeoutOnProgress: true } : {}),
        }),
      ),
    read: (uri) => within(15_000, `resources/read ${uri}`, client.readResource({ uri })),
    subscribe: (uri) => within(15_000, `resources/subscribe ${uri}`, client.subscribeResource({ uri })),
    onUpdated: (fn) => client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => fn(n.params.uri)),
  };
}

async function connect(transport, label, opts = {}) {
  const client = new Client({ name: `i2v-interop-${label}`, version: "1.0.0" }, opts);
  await within(15_000, `${label}: connect`, client.connect(transport));
  onCleanup(() => client.close());
  return client;
}

const ws = workspace();

// stdio
await check(`${LABEL}/stdio: session`, async () => {
  const client = await connect(
    new StdioClientTransport({ command: BIN, args: ["serve"], env: ws.env, stderr: "ignore" }),
    "stdio",
  );
  const c = adapter(client);
  const task = await scenario(`${LABEL}/stdio`, ws, c, "stdio");
  await check(`${LABEL}/stdio: get_task wait_seconds 120 (> maximum) is clamped, not an error`, async () => {
    const id = task?.task_id ?? "tsk_00000000000000000000000000000000";
    const r = await c.call("get_task", { task_id: id, wait_seconds: 120 });
    const text = String(r.content?.[0]?.text);
    if (task) assert.notEqual(r.isError, true, `wait_seconds 120 was refused: ${text}`);
    else assert.ok(!text.includes("invalid_input"), `wait_seconds 120 was refused: ${text}`);
  });
  await client.close();
});

// streamable HTTP
await check(`${LABEL}/http: session`, async () => {
  const server = await startHttp(ws);
  const transport = new StreamableHTTPClientTransport(new URL(server.mcp));
  const client = await connect(transport, "http");
  await scenario(`${LABEL}/http`, ws, adapter(client), "http");
  await check(`${LABEL}/http: terminateSession (DELETE /mcp)`, () => within(10_000, "DELETE", transport.terminateSession()));
  await client.close();
  await server.stop();
});

// legacy HTTP+SSE
await check(`${LABEL}/sse: session`, async () => {
  const server = await startHttp(ws);
  const client = await connect(new SSEClientTransport(new URL(server.sse)), "sse");
  await scenario(`${LABEL}/sse`, ws, adapter(client), "sse");
  await client.close();
  await server.stop();
});

// Roots race: a client whose root is the only place the image may come from, calling create the
// moment it is connected (the server must wait for roots/list, not refuse the path).
for (let run = 1; run <= 3; run++) {
  await check(`${LABEL}/stdio: roots race, run ${run}`, async () => {
    const client = new Client(
      { name: "i2v-interop-roots", version: "1.0.0" },
      { capabilities: { roots: { listChanged: true } } },
    );
    client.setRequestHandler(ListRootsRequestSchema, async () => ({
      roots: [{ uri: fileUri(ws.rootsDir), name: "client root" }],
    }));
    await within(15_000, "connect", client.connect(
      new StdioClientTransport({ command: BIN, args: ["serve"], env: ws.env, stderr: "ignore" }),
    ));
    try {
      const r = await within(30_000, "create", client.callTool(
        { name: "create_i2v_task", arguments: { provider: "local", image: ws.rootImage, prompt: "slow zoom in" } },
        CallToolResultSchema,
        { timeout: 30_000 },
      ));
      assert.notEqual(r.isError, true, `create refused: ${r.content?.[0]?.text}`);
      const t = taskOf(r);
      assert.ok(["queued", "running", "succeeded"].includes(t?.status), JSON.stringify(r));
      // Stop the render: it is not what this checks, and it would hold up the server's exit.
      await within(10_000, "cancel", client.callTool({ name: "cancel_task", arguments: { task_id: t.task_id } }, CallToolResultSchema));
    } finally {
      await client.close();
    }
  });
}

await finish(LABEL);
