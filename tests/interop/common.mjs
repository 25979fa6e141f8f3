// Shared helpers for the interop scripts: a throwaway workspace, the real server over HTTP, the
// server contract's assertions, and a check recorder that prints one line per check and sets the
// exit code. Every wait here is bounded; every server process started here is killed on exit.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import assert from "node:assert/strict";

export { assert };
export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.argv[2] ?? process.env.I2V_MCP_BIN;
if (!BIN || !fs.existsSync(BIN)) {
  console.error(`usage: node ${path.basename(process.argv[1])} <path to i2v-mcp binary>`);
  process.exit(2);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message naming `what`. */
export function within(ms, what, promise) {
  let t;
  const timeout = new Promise((_, rej) => {
    t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

/** Polls `pred` every 50 ms for up to `ms`; returns whether it became true. */
export async function until(ms, pred) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await sleep(50);
  }
  return !!(await pred());
}

// ---------------------------------------------------------------------------------------------
// Checks

const results = [];
const started = Date.now();
const cleanups = [];

/** Runs one named check; a throw is a failure with its message. Returns the fn's value or undefined. */
export async function check(name, fn) {
  const t0 = Date.now();
  try {
    const v = await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    return v;
  } catch (e) {
    results.push({ name, ok: false });
    // Assertions and protocol errors (with a JSON-RPC code) speak for themselves; others get a stack.
    const plain = e instanceof assert.AssertionError || typeof e?.code === "number" || !e?.stack;
    const msg = plain ? e?.message ?? String(e) : e.stack;
    console.log(`FAIL ${name} (${Date.now() - t0} ms)\n     ${String(msg).split("\n").join("\n     ")}`);
    return undefined;
  }
}

/** Records a check that could not run because an earlier one failed. */
export function blocked(name, why) {
  results.push({ name, ok: false });
  console.log(`FAIL ${name}: not run, ${why}`);
}

export function onCleanup(fn) {
  cleanups.push(fn);
}

async function runCleanups() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await within(5000, "cleanup", Promise.resolve().then(fn));
    } catch (e) {
      console.log(`(cleanup: ${e.message})`);
    }
  }
}

/** Prints the summary, cleans up, and exits 0 only when every check passed. */
export async function finish(label) {
  await runCleanups();
  const failed = results.filter((r) => !r.ok);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `${label}: ${results.length - failed.length}/${results.length} checks passed in ${secs} s` +
      (failed.length ? `; failed: ${failed.map((f) => f.name).join(", ")}` : ""),
  );
  process.exit(failed.length ? 1 : 0);
}

/** A hard stop for the whole script, so a hung client can never hang `cargo test`. */
export function watchdog(ms, label) {
  const t = setTimeout(async () => {
    console.log(`FAIL ${label}: watchdog fired after ${ms} ms`);
    results.push({ name: "watchdog", ok: false });
    await finish(label);
  }, ms);
  t.unref();
}

process.on("exit", () => {
  for (const p of liveProcs) {
    try {
      p.kill("SIGKILL");
    } catch {}
  }
});
const liveProcs = new Set();

// ---------------------------------------------------------------------------------------------
// Workspace and environment

/** Temp dirs, an image inside the allowed dir, one outside, and an env with no provider keys. */
export function workspace() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "i2v-interop-"));
  onCleanup(() => fs.rmSync(root, { recursive: true, force: true }));
  const mk = (p) => (fs.mkdirSync(path.join(root, p), { recursive: true }), path.join(root, p));
  const allowed = mk("images");
  const outside = mk("outside");
  const rootsDir = mk("client-root");
  const example = path.join(HERE, "..", "..", "examples", "lighthouse.png");
  const image = path.join(allowed, "lighthouse.png");
  fs.copyFileSync(example, image);
  const outsideImage = path.join(outside, "lighthouse.png");
  fs.copyFileSync(example, outsideImage);
  const rootImage = path.join(rootsDir, "lighthouse.png");
  fs.copyFileSync(example, rootImage);
  const config = path.join(root, "config.toml");
  fs.writeFileSync(config, "");
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/_API_KEY$/.test(k) || k.startsWith("I2V_MCP_") || /^(PIAPI|QUBICO|NOVITA|APIKLEY)_/.test(k)) continue;
    env[k] = v;
  }
  Object.assign(env, {
    HOME: mk("home"),
    XDG_CONFIG_HOME: mk("home/.config"),
    XDG_DATA_HOME: mk("home/.local/share"),
    I2V_MCP_CONFIG: config,
    I2V_MCP_DATA_DIR: mk("data"),
    I2V_MCP_OUTPUT_DIR: mk("videos"),
    I2V_MCP_ALLOWED_DIRS: allowed,
    RUST_LOG: "warn",
  });
  return { root, allowed, image, outsideImage, rootsDir, rootImage, env };
}

export function fileUri(p) {
  return pathToFileURL(p).href;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts `i2v-mcp serve --http 127.0.0.1:<port> [extra]` and waits for /healthz. */
export async function startHttp(ws, extra = []) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const proc = spawn(BIN, ["serve", "--http", `127.0.0.1:${port}`, ...extra], {
    env: ws.env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  liveProcs.add(proc);
  let stderr = "";
  proc.stderr.on("data", (d) => {
    stderr += d;
    if (stderr.length > 20000) stderr = stderr.slice(-20000);
  });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const exited = await until(3000, () => proc.exitCode !== null || proc.signalCode !== null);
    if (!exited) proc.kill("SIGKILL");
    liveProcs.delete(proc);
  };
  onCleanup(stop);
  const up = await until(15000, async () => {
    if (proc.exitCode !== null) return true;
    try {
      const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      return r.ok;
    } catch {
      return false;
    }
  });
  if (!up || proc.exitCode !== null) {
    await stop();
    throw new Error(`server did not come up on ${base} (exit ${proc.exitCode}): ${stderr}`);
  }
  return { port, base, mcp: `${base}/mcp`, sse: `${base}/sse`, proc, stop, stderr: () => stderr };
}

// ---------------------------------------------------------------------------------------------
// The server's contract

/** A tool error: isError, no structuredContent, content[0] text = {"error":{category,message,...}}. */
export function assertToolError(result, category) {
  assert.equal(result?.isError, true, `expected isError: true, got ${show(result)}`);
  assert.equal(result.structuredContent, undefined, `an error result must carry no structuredContent: ${show(result)}`);
  const first = result.content?.[0];
  assert.equal(first?.type, "text", `content[0] must be a text block: ${show(result)}`);
  let body;
  try {
    body = JSON.parse(first.text);
  } catch {
    assert.fail(`content[0].text is not JSON: ${first.text}`);
  }
  assertCompact(first.text);
  assert.equal(body?.error?.category, category, `category: ${first.text}`);
  assert.ok(typeof body.error.message === "string" && body.error.message.length > 0, `message: ${first.text}`);
  assert.equal(typeof body.error.retryable, "boolean", `retryable: ${first.text}`);
  return body.error;
}

/** A success: structuredContent present and content[0].text is exactly its compact JSON. */
export function assertToolOk(result) {
  assert.notEqual(result?.isError, true, `expected success, got ${show(result)}`);
  assert.ok(result.structuredContent && typeof result.structuredContent === "object", `no structuredContent: ${show(result)}`);
  const first = result.content?.[0];
  assert.equal(first?.type, "text", `content[0] must be a text block: ${show(result)}`);
  let parsed;
  try {
    parsed = JSON.parse(first.text);
  } catch {
    assert.fail(`content[0].text is not JSON (expected the compact JSON of structuredContent): ${first.text}`);
  }
  assert.deepEqual(parsed, result.structuredContent, "content[0].text must be the JSON of structuredContent");
  assertCompact(first.text);
  return result.structuredContent;
}

/** The resource_link block of a succeeded task. */
export function assertVideoLink(result) {
  const link = (result.content ?? []).find((c) => c.type === "resource_link");
  assert.ok(link, `no resource_link content block: ${show(result)}`);
  assert.equal(link.mimeType, "video/mp4", `resource_link mimeType: ${show(link)}`);
  assert.ok(typeof link.uri === "string" && link.uri.length > 0, `resource_link uri: ${show(link)}`);
  return link;
}

export function assertVideoContents(read) {
  const c = read?.contents?.[0];
  assert.ok(c, `no contents: ${show(read)}`);
  assert.equal(c.mimeType, "video/mp4", `mimeType: ${show({ ...c, blob: c.blob && `<${c.blob.length} chars>` })}`);
  assert.ok(typeof c.blob === "string" && c.blob.length > 1000, "a base64 blob of the video");
  const head = Buffer.from(c.blob.slice(0, 64), "base64");
  assert.equal(head.subarray(4, 8).toString("latin1"), "ftyp", "the blob is an MP4 (ftyp box)");
}

/** No whitespace outside strings (numbers may differ from JS's spelling, e.g. Rust's `0.0`). */
export function assertCompact(text) {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (/\s/.test(ch)) assert.fail(`content[0].text must be compact JSON (whitespace at ${i}): ${text.slice(0, 300)}`);
  }
}

/** The task of a successful result: structuredContent, else the JSON text. */
export function taskOf(result) {
  if (result?.structuredContent) return result.structuredContent;
  try {
    return JSON.parse(result?.content?.[0]?.text);
  } catch {
    return undefined;
  }
}

export function show(v) {
  const s = JSON.stringify(v);
  return s && s.length > 1500 ? s.slice(0, 1500) + "…" : s;
}

export const UNKNOWN_TASK = "tsk_00000000000000000000000000000000";
export const TOOLS = [
  "cancel_task",
  "create_i2v_task",
  "estimate_cost",
  "get_task",
  "list_loras",
  "list_models",
  "list_tasks",
];

export function assertToolsList(list) {
  const names = list.tools.map((t) => t.name).sort();
  assert.deepEqual(names, TOOLS);
  const get = list.tools.find((t) => t.name === "get_task");
  const max = get.inputSchema?.properties?.wait_seconds?.maximum;
  assert.ok(typeof max === "number" && max <= 50, `get_task.wait_seconds maximum must be <= 50, is ${max}`);
}

// ---------------------------------------------------------------------------------------------
// The common scenario, for clients with the TypeScript SDK's shape.

/**
 * `c` adapts one client: { call(name, args, {onprogress}) -> CallToolResult, list(), read(uri),
 * subscribe(uri) (-> resolves when subscribed), onUpdated(fn) }.
 * `kind` is "stdio" | "http" | "sse"; it decides what the video link looks like. `render: false`
 * stops before the create (the local render costs ~4 CPU-seconds in a debug build).
 */
export async function scenario(label, ws, c, kind, { render = true } = {}) {
  await check(`${label}: tools/list`, async () => assertToolsList(await c.list()));

  await check(`${label}: error not_found (get_task unknown id)`, async () =>
    assertToolError(await c.call("get_task", { task_id: UNKNOWN_TASK }), "not_found"),
  );
  await check(`${label}: error invalid_input (image outside the allowed dirs)`, async () =>
    assertToolError(
      await c.call("create_i2v_task", { provider: "local", image: ws.outsideImage, prompt: "slow zoom in" }),
      "invalid_input",
    ),
  );
  await check(`${label}: error auth (piapi without a key)`, async () =>
    assertToolError(
      await c.call("create_i2v_task", { provider: "piapi", image: ws.image, prompt: "slow zoom in" }),
      "auth",
    ),
  );

  await check(`${label}: resources/read i2v://models`, async () => {
    const r = await c.read("i2v://models");
    const body = JSON.parse(r.contents[0].text);
    assert.ok(JSON.stringify(body).includes("camera-preview"), "the local model is listed");
  });

  if (!render) return;
  const updates = [];
  c.onUpdated((uri) => updates.push(uri));

  let created;
  await check(`${label}: create_i2v_task local`, async () => {
    created = await c.call("create_i2v_task", { provider: "local", image: ws.image, prompt: "slow zoom in" });
    const t = taskOf(created);
    assert.match(String(t?.task_id), /^tsk_/, show(created));
    assert.ok(["queued", "running", "succeeded"].includes(t.status), `status ${t.status}`);
  });
  const task = created && taskOf(created);
  if (!task?.task_id) {
    for (const n of ["result shape", "resources/subscribe", "get_task wait with progress", "resources/read task", "updated notification", "read video link"])
      blocked(`${label}: ${n}`, "create failed");
    return;
  }
  await check(`${label}: create result is structuredContent + its compact JSON text`, () => assertToolOk(created));
  const uri = `i2v://tasks/${task.task_id}`;
  await check(`${label}: resources/subscribe ${uri}`, () => c.subscribe(uri));

  let progress = 0;
  let last;
  const done = await check(`${label}: get_task wait_seconds with progress until succeeded`, async () => {
    let t;
    for (let i = 0; i < 4; i++) {
      last = await c.call("get_task", { task_id: task.task_id, wait_seconds: 30 }, { onprogress: () => progress++ });
      t = taskOf(last);
      if (t?.status === "succeeded") {
        const link = assertVideoLink(last);
        assert.ok(progress >= 1, `no notifications/progress arrived (got ${progress})`);
        return { task: t, link };
      }
      assert.ok(["queued", "running"].includes(t?.status), `status ${t?.status}: ${show(last)}`);
    }
    assert.fail(`still ${t?.status} after 4 waits`);
  });
  if (last) await check(`${label}: get_task result is structuredContent + its compact JSON text`, () => assertToolOk(last));

  await check(`${label}: resources/read ${uri}`, async () => {
    const r = await c.read(uri);
    const body = JSON.parse(r.contents[0].text);
    assert.equal(body.task_id ?? body.task?.task_id, task.task_id, show(body));
  });

  await check(`${label}: notifications/resources/updated after subscribe`, async () => {
    const ok = await until(5000, () => updates.includes(uri));
    assert.ok(ok, `no notifications/resources/updated for ${uri} (got ${show(updates)})`);
  });

  if (!done) {
    blocked(`${label}: resources/read of the resource_link`, "the task did not succeed");
    return task;
  }
  await check(`${label}: resources/read of the resource_link (${kind})`, async () => {
    const { link } = done;
    if (kind === "stdio") assert.match(link.uri, /^file:\/\//, "a file:// link over stdio");
    else assert.match(link.uri, /^http:\/\/127\.0\.0\.1:\d+\/videos\/s\/\d+\/[0-9a-f]{64}\/tsk_[0-9a-f]+\.mp4$/, `an http video link, got ${link.uri}`);
    assertVideoContents(await c.read(link.uri));
  });
  return done.task;
}
