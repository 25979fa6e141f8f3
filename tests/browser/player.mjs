// The MCP Apps player (GitHub issue 14, part 3) in a real headless Chromium (Debian's `chromium`,
// driven by puppeteer-core, which never downloads a browser). A small host page loads the player
// into a sandboxed iframe and speaks the MCP Apps host side (ui/initialize, tool-input,
// tool-result, relaying the view's tools/call and resources/read) to a real `i2v-mcp serve --http`
// through this script (page.exposeFunction -> fetch to /mcp), as a chat host's backend would.
//
// Checks: the player is offered to a host that declares io.modelcontextprotocol/ui; progress is
// shown while a local preview renders; then a <video> whose media loaded (readyState >= 2,
// duration ~ 5 s) plays; Download goes through the host (ui/download-file); Cancel cancels a slow
// task. Screenshots in target/browser: player.png (the playing video, light theme),
// player-running.png and player-cancelled.png (dark theme).
//
// usage: node player.mjs <path to i2v-mcp binary>   (env CHROMIUM overrides /usr/bin/chromium)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { assert, check, blocked, finish, onCleanup, startHttp, until, watchdog, within, workspace } from "../interop/common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(HERE, "../../target/browser");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const UI = "io.modelcontextprotocol/ui";
const PLAYER = "ui://i2v/player.html";
const MIME = "text/html;profile=mcp-app";

watchdog(240_000, "browser");
fs.mkdirSync(OUT, { recursive: true });

// ---------------------------------------------------------------------------------------------
// A minimal streamable-HTTP MCP client (the host's backend): one session, JSON-RPC over POST.

async function connect(url, capabilities) {
  let session = null;
  let nextId = 1;
  async function post(body) {
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    if (session) Object.assign(headers, { "mcp-session-id": session, "mcp-protocol-version": "2025-11-25" });
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
    session ??= res.headers.get("mcp-session-id");
    const text = await res.text();
    if (!res.ok && res.status !== 202) throw new Error(`HTTP ${res.status}: ${text.slice(0, 500)}`);
    return text;
  }
  async function rpc(method, params) {
    const id = nextId++;
    const text = await post({ jsonrpc: "2.0", id, method, params });
    // JSON, or an SSE stream whose data lines carry notifications and then our answer.
    const messages = text.trim().startsWith("{")
      ? [JSON.parse(text)]
      : text.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).filter(Boolean).map((l) => JSON.parse(l));
    const answer = messages.find((m) => m.id === id);
    if (!answer) throw new Error(`no answer to ${method}: ${text.slice(0, 500)}`);
    if (answer.error) throw Object.assign(new Error(`${method}: ${answer.error.message}`), { code: answer.error.code });
    return answer.result;
  }
  const init = await rpc("initialize", {
    protocolVersion: "2025-11-25",
    capabilities,
    clientInfo: { name: "i2v-browser-test-host", version: "0.0.1" },
  });
  await post({ jsonrpc: "2.0", method: "notifications/initialized" });
  return { rpc, init };
}

// ---------------------------------------------------------------------------------------------
// The host page: the player in a sandboxed iframe, the MCP Apps host side in a few lines.

const HOST_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>test host</title></head>
<body style="margin:0;background:#e5e7eb">
<iframe id="view" sandbox="allow-scripts allow-downloads" style="display:block;width:760px;height:700px;border:0"></iframe>
<script>
const frame = document.getElementById("view");
window.seen = [];
window.downloads = [];
let ctx = null;
window.startView = (html, input, result, theme) => { ctx = { input, result, theme }; frame.srcdoc = html; };
const send = (m) => frame.contentWindow.postMessage(Object.assign({ jsonrpc: "2.0" }, m), "*");
window.addEventListener("message", async (e) => {
  if (e.source !== frame.contentWindow) return;
  const m = e.data;
  if (!m || m.jsonrpc !== "2.0") return;
  window.seen.push(m.method || "response");
  if (m.method === "ui/initialize") {
    return send({ id: m.id, result: { protocolVersion: "2026-01-26", hostInfo: { name: "i2v-test-host", version: "1" },
      hostCapabilities: { serverTools: {}, serverResources: {}, downloadFile: {} }, hostContext: { theme: ctx.theme, displayMode: "inline" } } });
  }
  if (m.method === "ui/notifications/initialized") {
    send({ method: "ui/notifications/tool-input", params: { arguments: ctx.input } });
    return send({ method: "ui/notifications/tool-result", params: ctx.result });
  }
  if (m.method === "ui/download-file") {
    window.downloads.push(m.params);
    return send({ id: m.id, result: {} });
  }
  if (m.method === "tools/call" || m.method === "resources/read") {
    try { send({ id: m.id, result: await window.relay(m.method, m.params) }); }
    catch (err) { send({ id: m.id, error: { code: -32603, message: String(err && err.message || err) } }); }
    return;
  }
  if (m.id !== undefined && m.method) send({ id: m.id, error: { code: -32601, message: "not offered by the test host" } });
});
</script></body></html>`;

// ---------------------------------------------------------------------------------------------

const ws = workspace();
const server = await startHttp(ws);
let mcp, html, browser, page;

await check("a host that declares MCP Apps gets the player", async () => {
  mcp = await connect(server.mcp, { extensions: { [UI]: { mimeTypes: [MIME] } } });
  const { tools } = await mcp.rpc("tools/list", {});
  for (const name of ["create_i2v_task", "get_task"]) {
    const tool = tools.find((t) => t.name === name);
    assert.equal(tool?._meta?.ui?.resourceUri, PLAYER, `${name}: ${JSON.stringify(tool?._meta)}`);
  }
  const { resources } = await mcp.rpc("resources/list", {});
  const listed = resources.find((r) => r.uri === PLAYER);
  assert.equal(listed?.mimeType, MIME, JSON.stringify(resources.map((r) => r.uri)));
  // HTTP mode: the public origin is declared for <video src> fallbacks.
  assert.deepEqual(listed._meta?.ui?.csp?.resourceDomains, [server.base], JSON.stringify(listed._meta));
  const read = await mcp.rpc("resources/read", { uri: PLAYER });
  assert.equal(read.contents[0].mimeType, MIME);
  html = read.contents[0].text;
  assert.ok(html.startsWith("<!doctype html>"), html.slice(0, 80));
});

await check("headless chromium starts", async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "i2v-chromium-"));
  onCleanup(() => fs.rmSync(profile, { recursive: true, force: true }));
  browser = await within(30_000, "chromium launch", puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
  }));
  onCleanup(() => browser.close());
  page = await browser.newPage();
  await page.setViewport({ width: 760, height: 700 });
  page.on("console", (m) => console.log(`     [view console] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`     [view error] ${e.message}`));
  await page.exposeFunction("relay", (method, params) => mcp.rpc(method, params));
  await page.setContent(HOST_PAGE);
});

/** The player's frame (the sandboxed srcdoc iframe). */
async function viewFrame() {
  let frame;
  const ok = await until(10_000, async () => {
    frame = page.frames().find((f) => f !== page.mainFrame());
    return !!frame && !!(await frame.$("#status").catch(() => null));
  });
  assert.ok(ok, "the player did not load in the iframe");
  return frame;
}

/** Text of the status badge and progress line, sampled until `until` holds; returns all distinct samples. */
async function watch(frame, ms, pred) {
  const samples = new Set();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const s = await frame.evaluate(() => ({
      status: document.getElementById("status").textContent,
      progress: document.getElementById("progress").textContent,
      bar: document.getElementById("bar").style.width,
      error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
      video: (() => { const v = document.getElementById("video"); return { rs: v.readyState, d: v.duration, t: v.currentTime, hidden: v.hidden }; })(),
    }));
    samples.add(`${s.status} | ${s.progress} | ${s.bar}`);
    if (await pred(s)) return { last: s, samples: [...samples] };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms; seen: ${[...samples].join(" ; ")}`);
}

const preview = { provider: "local", image: ws.image, prompt: "slow zoom in on the lighthouse", duration_seconds: 5, resolution: "480p", camera_motion: { type: "zoom_in" } };

if (page && html) {
  await check("the player shows progress, then plays the 5 s preview", async () => {
    const created = await mcp.rpc("tools/call", { name: "create_i2v_task", arguments: preview });
    assert.notEqual(created.isError, true, JSON.stringify(created));
    await page.evaluate((h, i, r) => window.startView(h, i, r, "light"), html, preview, created);
    const frame = await viewFrame();
    const running = await watch(frame, 30_000, (s) => /Queued|Rendering/.test(s.progress) && (s.status === "queued" || s.status === "running"));
    console.log(`     progress shown: ${running.last.status} | ${running.last.progress}`);
    const played = await watch(frame, 60_000, (s) => {
      if (s.error) throw new Error(`the player shows an error: ${s.error}`);
      return !s.video.hidden && s.video.rs >= 2 && s.video.t > 1.0;
    });
    const v = played.last.video;
    console.log(`     progress samples: ${played.samples.join(" ; ")}`);
    console.log(`     video: readyState ${v.rs}, duration ${v.d.toFixed(2)} s, playing at ${v.t.toFixed(2)} s`);
    assert.ok(Math.abs(v.d - 5) < 0.5, `duration ${v.d}`);
    assert.equal(played.last.status, "succeeded");
    const params = await frame.evaluate(() => document.getElementById("params").textContent);
    assert.match(params, /local/);
    assert.match(params, /slow zoom in/);
    assert.match(params, /duration5 s/);
    const download = await frame.evaluate(() => { const a = document.getElementById("download"); return { hidden: a.hidden, href: a.href, name: a.download }; });
    assert.ok(!download.hidden && download.href.startsWith("blob:") && download.name.endsWith(".mp4"), JSON.stringify(download));
    await (await frame.$("#download")).click();
    const got = await until(5_000, () => page.evaluate(() => window.downloads.length > 0));
    assert.ok(got, "Download did not ask the host (ui/download-file)");
    const dl = await page.evaluate(() => window.downloads[0].contents.map((c) => ({ type: c.type, mime: c.resource.mimeType, uri: c.resource.uri, b64: c.resource.blob.length })));
    assert.equal(dl.length, 1, JSON.stringify(dl));
    assert.equal(dl[0].type, "resource");
    assert.equal(dl[0].mime, "video/mp4");
    assert.ok(dl[0].b64 > 1000, JSON.stringify(dl));
    console.log(`     download via the host: ${dl[0].uri} (${dl[0].b64} base64 chars)`);
    const seen = await page.evaluate(() => window.seen);
    assert.ok(seen.includes("tools/call") && seen.includes("resources/read"), `the view's requests: ${seen}`);
    await (await page.$("#view")).screenshot({ path: path.join(OUT, "player.png") });
    console.log(`     screenshot: ${path.join(OUT, "player.png")}`);
  });

  await check("Cancel cancels a running task", async () => {
    const slow = { ...preview, duration_seconds: 15, resolution: "720p", prompt: "a slow pan to be cancelled", camera_motion: { type: "pan_left" } };
    const created = await mcp.rpc("tools/call", { name: "create_i2v_task", arguments: slow });
    assert.notEqual(created.isError, true, JSON.stringify(created));
    const id = created.structuredContent.task_id;
    await page.evaluate((h, i, r) => window.startView(h, i, r, "dark"), html, slow, created);
    const frame = await viewFrame();
    // Running, not merely queued: the render is under way when Cancel is pressed.
    await watch(frame, 20_000, (s) => s.status === "running");
    await (await page.$("#view")).screenshot({ path: path.join(OUT, "player-running.png") });
    const cancel = await frame.$("#cancel");
    assert.ok(cancel && (await cancel.isVisible()), "no visible Cancel button while the task runs");
    await cancel.click();
    const done = await watch(frame, 20_000, (s) => s.status === "cancelled");
    const after = await frame.evaluate(() => ({ cancel: document.getElementById("cancel").hidden, video: document.getElementById("video").hidden }));
    assert.deepEqual(after, { cancel: true, video: true }, "after cancelling: Cancel gone, no video");
    const task = await mcp.rpc("tools/call", { name: "get_task", arguments: { task_id: id } });
    assert.equal(task.structuredContent.status, "cancelled", JSON.stringify(task.structuredContent));
    console.log(`     ${done.samples.join(" ; ")}`);
    await (await page.$("#view")).screenshot({ path: path.join(OUT, "player-cancelled.png") });
  });
} else {
  blocked("the player shows progress, then plays the 5 s preview", "no browser or no player");
  blocked("Cancel cancels a running task", "no browser or no player");
}

await finish("browser");
