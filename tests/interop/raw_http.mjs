// Hand-written HTTP requests for what SDK clients never send or never check: an integer written
// as `5.0`, non-object `arguments`, the status of DELETE /mcp, and 2026-07-28
// server/discover + subscriptions/listen on the stateful and the --stateless server.
// Usage: node raw_http.mjs <path to i2v-mcp>
import { assert, assertToolError, check, finish, startHttp, UNKNOWN_TASK, watchdog, workspace } from "./common.mjs";

const LABEL = "raw-http";
watchdog(60_000, LABEL);
const ws = workspace();

const META = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1" },
};

/** POSTs a raw body; returns { status, headers, messages } with SSE or JSON bodies decoded. */
async function post(url, body, headers = {}, { stopWhen } = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10_000);
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
      signal: ctl.signal,
    });
    const messages = [];
    const type = r.headers.get("content-type") ?? "";
    if (type.includes("text/event-stream")) {
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const event = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = event
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart())
            .join("\n");
          if (data) messages.push(JSON.parse(data));
        }
        if (stopWhen?.(messages)) {
          ctl.abort();
          break;
        }
      }
    } else {
      const text = await r.text();
      if (text) messages.push(JSON.parse(text));
    }
    return { status: r.status, headers: r.headers, messages };
  } catch (e) {
    if (e.name === "AbortError" && stopWhen) return { status: 0, messages: [] , aborted: true };
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

const response = (res, id) => res.messages.find((m) => m.id === id && ("result" in m || "error" in m));

async function discoverThenListen(label, mcp) {
  await check(`${label}: 2026-07-28 subscribe advertised => subscriptions/listen works`, async () => {
    const h = { "mcp-protocol-version": "2026-07-28" };
    const d = await post(mcp, { jsonrpc: "2.0", id: 1, method: "server/discover", params: { _meta: META } }, {
      ...h,
      "mcp-method": "server/discover",
    });
    const caps = response(d, 1)?.result?.capabilities;
    assert.ok(caps, `server/discover: ${d.status} ${JSON.stringify(d.messages)}`);
    if (!caps.resources?.subscribe) {
      console.log(`     (resources.subscribe not advertised: ${JSON.stringify(caps.resources)})`);
      return;
    }
    const uri = `i2v://tasks/${UNKNOWN_TASK}`;
    const l = await post(
      mcp,
      { jsonrpc: "2.0", id: 2, method: "subscriptions/listen", params: { _meta: META, notifications: { resourceSubscriptions: [uri] } } },
      { ...h, "mcp-method": "subscriptions/listen" },
      { stopWhen: (ms) => ms.some((m) => m.id === 2 || m.method === "notifications/subscriptions/acknowledged") },
    );
    const err = response(l, 2)?.error;
    assert.notEqual(err?.code, -32601, `resources.subscribe is advertised but subscriptions/listen is -32601: ${JSON.stringify(err)}`);
    assert.equal(err, undefined, `subscriptions/listen failed: ${JSON.stringify(err)}`);
    assert.ok(
      l.messages.some((m) => m.method === "notifications/subscriptions/acknowledged"),
      `no notifications/subscriptions/acknowledged (HTTP ${l.status}): ${JSON.stringify(l.messages)}`,
    );
  });
}

// Stateful streamable HTTP (the default).
await check(`${LABEL}: stateful server`, async () => {
  const s = await startHttp(ws);
  const init = await post(s.mcp, {
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  });
  const sid = init.headers.get("mcp-session-id");
  assert.ok(sid, `no mcp-session-id (HTTP ${init.status})`);
  const h = { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
  const n = await post(s.mcp, '{"jsonrpc":"2.0","method":"notifications/initialized"}', h);
  assert.ok(n.status >= 200 && n.status < 300, `initialized: HTTP ${n.status}`);

  await check(`${LABEL}: get_task "wait_seconds":5.0 (float for an integer) accepted`, async () => {
    const r = await post(
      s.mcp,
      `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_task","arguments":{"task_id":"${UNKNOWN_TASK}","wait_seconds":5.0}}}`,
      h,
    );
    const m = response(r, 1);
    assert.ok(m?.result, `wait_seconds 5.0 refused: ${JSON.stringify(r.messages)}`);
    assertToolError(m.result, "not_found");
  });

  await check(`${LABEL}: tools/call with "arguments":[] is JSON-RPC -32602`, async () => {
    const r = await post(s.mcp, '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_task","arguments":[]}}', h);
    const m = response(r, 2);
    assert.equal(m?.error?.code, -32602, `expected error -32602, got ${JSON.stringify(r.messages)}`);
  });

  await discoverThenListen(`${LABEL}/stateful`, s.mcp);

  await check(`${LABEL}: DELETE /mcp with the session id answers 200 or 204`, async () => {
    const r = await fetch(s.mcp, { method: "DELETE", headers: h, signal: AbortSignal.timeout(10_000) });
    assert.ok([200, 204].includes(r.status), `DELETE /mcp answered ${r.status}`);
  });
  await s.stop();
});

// Stateless streamable HTTP.
await check(`${LABEL}: --stateless server`, async () => {
  const s = await startHttp(ws, ["--stateless"]);
  await discoverThenListen(`${LABEL}/stateless`, s.mcp);
  await s.stop();
});

await finish(LABEL);
