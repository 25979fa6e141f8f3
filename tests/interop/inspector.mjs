// The MCP Inspector CLI (@modelcontextprotocol/inspector --cli, v2) against the real server:
// one-shot invocations over stdio (each spawns the server) and over streamable HTTP, plus its
// streaming `resources/subscribe`. The CLI never asks for progress, so progress is not checked here.
// Usage: node inspector.mjs <path to i2v-mcp>
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {
  BIN, HERE, UNKNOWN_TASK, assert, assertToolError, assertToolOk, assertToolsList, assertVideoContents, assertVideoLink,
  check, finish, show, startHttp, taskOf, watchdog, workspace,
} from "./common.mjs";

const LABEL = "inspector";
const PKG = path.join(HERE, "node_modules", "@modelcontextprotocol", "inspector");
const LAUNCHER = path.join(PKG, "clients", "launcher", "build", "index.js");
const VERSION = JSON.parse(fs.readFileSync(path.join(PKG, "package.json"))).version;
console.log(`@modelcontextprotocol/inspector ${VERSION} --cli, node ${process.version}`);
watchdog(200_000, LABEL);

const ws = workspace();
// The Inspector keeps a catalog and secrets under $HOME/.mcp-inspector: keep them in the workspace.
const cliEnv = { ...ws.env, MCP_CATALOG_PATH: path.join(ws.env.HOME, "catalog.json") };
const serverEnvArgs = ["I2V_MCP_CONFIG", "I2V_MCP_DATA_DIR", "I2V_MCP_OUTPUT_DIR", "I2V_MCP_ALLOWED_DIRS", "RUST_LOG", "HOME"]
  .flatMap((k) => ["-e", `${k}=${ws.env[k]}`]);

/** One CLI invocation; resolves { code, json, stdout, stderr }. Exit 5 is "the tool returned isError". */
function cli(args, target, { timeout = 45_000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [LAUNCHER, "--cli", "--format", "json", ...args, ...target], {
      env: cliEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error(`inspector ${args.join(" ")} timed out after ${timeout} ms; stderr: ${stderr.slice(-2000)}`));
    }, timeout);
    p.on("close", (code) => {
      clearTimeout(t);
      let json;
      try {
        json = JSON.parse(stdout);
      } catch {}
      resolve({ code, json, stdout, stderr });
    });
  });
}

const result = (r, what) => {
  assert.ok(r.json && "result" in r.json, `${what}: exit ${r.code}, stdout ${r.stdout.slice(0, 1500)} stderr ${r.stderr.slice(-1500)}`);
  return r.json.result;
};
const call = async (target, name, args) =>
  result(await cli(["--method", "tools/call", "--tool-name", name, "--tool-args-json", JSON.stringify(args)], target), name);
const read = async (target, uri) => result(await cli(["--method", "resources/read", "--uri", uri], target), `read ${uri}`);

async function flow(label, target, kind, { errors, render }) {
  await check(`${label}: tools/list`, async () =>
    assertToolsList(result(await cli(["--method", "tools/list"], target), "tools/list")),
  );
  if (errors) {
    await check(`${label}: error not_found (get_task unknown id)`, async () =>
      assertToolError(await call(target, "get_task", { task_id: UNKNOWN_TASK }), "not_found"),
    );
    await check(`${label}: error invalid_input (image outside the allowed dirs)`, async () =>
      assertToolError(
        await call(target, "create_i2v_task", { provider: "local", image: ws.outsideImage, prompt: "slow zoom in" }),
        "invalid_input",
      ),
    );
    await check(`${label}: error auth (piapi without a key)`, async () =>
      assertToolError(await call(target, "create_i2v_task", { provider: "piapi", image: ws.image, prompt: "slow zoom in" }), "auth"),
    );
  }
  await check(`${label}: resources/read i2v://models`, async () => {
    const r = await read(target, "i2v://models");
    assert.ok(r.contents[0].text.includes("camera-preview"), show(r).slice(0, 300));
  });

  if (!render) return;
  let created;
  await check(`${label}: create_i2v_task local`, async () => {
    created = await call(target, "create_i2v_task", { provider: "local", image: ws.image, prompt: "slow zoom in" });
    assert.match(String(taskOf(created)?.task_id), /^tsk_/, show(created));
  });
  const task = created && taskOf(created);
  if (!task?.task_id) return;
  await check(`${label}: create result is structuredContent + its compact JSON text`, () => assertToolOk(created));
  const uri = `i2v://tasks/${task.task_id}`;

  let done;
  await check(`${label}: get_task wait_seconds until succeeded, with a resource_link`, async () => {
    for (let i = 0; i < 4; i++) {
      const r = await call(target, "get_task", { task_id: task.task_id, wait_seconds: 30 });
      const t = taskOf(r);
      if (t?.status === "succeeded") {
        done = { r, link: assertVideoLink(r) };
        return;
      }
      assert.ok(["queued", "running"].includes(t?.status), show(r));
    }
    assert.fail("not succeeded after 4 waits");
  });
  if (done) await check(`${label}: get_task result is structuredContent + its compact JSON text`, () => assertToolOk(done.r));

  await check(`${label}: resources/read ${uri}`, async () => {
    const r = await read(target, uri);
    assert.equal(JSON.parse(r.contents[0].text).task_id, task.task_id);
  });

  if (done) {
    await check(`${label}: resources/read of the resource_link (${kind})`, async () => {
      if (kind === "stdio") assert.match(done.link.uri, /^file:\/\//);
      else assert.match(done.link.uri, /^http:\/\/127\.0\.0\.1:\d+\/videos\//);
      assertVideoContents(await read(target, done.link.uri));
    });
  }
}

// stdio: every invocation spawns the server (so a render would be cut short and restarted by the
// next invocation); the render is checked over HTTP, where one server outlives the invocations.
await check(`${LABEL}/stdio: flow`, () =>
  flow(`${LABEL}/stdio`, [...serverEnvArgs, BIN, "serve"], "stdio", { errors: true, render: false }),
);

// streamable HTTP: one server for all invocations.
await check(`${LABEL}/http: flow`, async () => {
  const s = await startHttp(ws);
  const target = ["--transport", "http", "--server-url", s.mcp];
  await flow(`${LABEL}/http`, target, "http", { errors: false, render: true });
  await s.stop();
});

await finish(LABEL);
