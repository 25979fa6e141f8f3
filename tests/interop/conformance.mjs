// The official conformance suite (@modelcontextprotocol/conformance), its SERVER scenarios that
// apply to this server, against `i2v-mcp serve --http` at /mcp (stateful, and --stateless for the
// ones that need no session). Why the others are left out: see EXCLUDED below and README.md.
// Usage: node conformance.mjs <path to i2v-mcp>
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { HERE, assert, check, finish, onCleanup, startHttp, watchdog, workspace } from "./common.mjs";

const LABEL = "conformance";
const PKG = path.join(HERE, "node_modules", "@modelcontextprotocol", "conformance");
const VERSION = JSON.parse(fs.readFileSync(path.join(PKG, "package.json"))).version;
console.log(`@modelcontextprotocol/conformance ${VERSION}, node ${process.version}`);
watchdog(150_000, LABEL);

const INCLUDED = [
  "server-initialize",
  "ping",
  "tools-list",
  "resources-list",
  "server-sse-multiple-streams",
  "dns-rebinding-protection",
];
const STATELESS = ["server-initialize", "ping", "tools-list"];
// Scenarios written against the suite's own reference server: they call its fixture tools
// (test_simple_text, test_image_content, test_reconnection, json_schema_2020_12_tool, ...), read
// its test:// resources, or use features this server does not offer.
export const EXCLUDED = {
  "tools-call-simple-text, tools-call-image, tools-call-audio, tools-call-embedded-resource, tools-call-mixed-content, tools-call-error, tools-call-with-progress":
    "call fixture tools test_* that only the reference server has (tools-call-error/-simple-text pass vacuously on the unknown-tool error)",
  "tools-call-sampling, tools-call-elicitation, elicitation-sep1034-defaults, elicitation-sep1330-enums":
    "the server never asks the client for sampling or elicitation",
  "logging-set-level, tools-call-with-logging": "no logging capability (logs go to stderr)",
  "completion-complete": "no completions capability",
  "prompts-list, prompts-get-*": "no prompts",
  "resources-read-text, resources-read-binary, resources-templates-read, resources-subscribe, resources-unsubscribe":
    "read/subscribe the fixture URIs test://static-text, test://static-binary, test://template/{id}/data (our resources are i2v://models and i2v://tasks/{id}; reads and subscriptions of those are checked by every client script)",
  "json-schema-2020-12": "looks for the fixture tool json_schema_2020_12_tool",
  "server-sse-polling": "needs the fixture tool test_reconnection (pending suite)",
};

const ws = workspace();
const outRoot = path.join(ws.root, "conformance-results");

function run(url, scenario) {
  return new Promise((resolve, reject) => {
    const out = path.join(outRoot, `${scenario}-${Math.random().toString(36).slice(2)}`);
    const p = spawn(process.execPath, [path.join(PKG, "dist", "index.js"), "server", "--url", url, "--scenario", scenario, "-o", out], {
      env: { ...ws.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    onCleanup(() => p.kill("SIGKILL"));
    let log = "";
    p.stdout.on("data", (d) => (log += d));
    p.stderr.on("data", (d) => (log += d));
    const t = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error(`${scenario} timed out; output: ${log.slice(-2000)}`));
    }, 30_000);
    p.on("close", (code) => {
      clearTimeout(t);
      const checks = [];
      if (fs.existsSync(out)) {
        for (const d of fs.readdirSync(out)) {
          const f = path.join(out, d, "checks.json");
          if (fs.existsSync(f)) checks.push(...JSON.parse(fs.readFileSync(f, "utf8")));
        }
      }
      resolve({ code, checks, log });
    });
  });
}

async function scenarios(label, url, list) {
  // Two at a time: the machine this runs on has two cores.
  const queue = [...list];
  const worker = async () => {
    for (let s; (s = queue.shift()); ) {
      await check(`${label}: ${s}`, async () => {
        const { code, checks, log } = await run(url, s);
        assert.ok(checks.length > 0, `no checks recorded (exit ${code}): ${log.slice(-1500)}`);
        const bad = checks.filter((c) => c.status === "FAILURE");
        const warn = checks.filter((c) => c.status === "WARNING");
        for (const w of warn) console.log(`     warning ${w.id}: ${w.errorMessage ?? w.details?.message ?? ""}`);
        assert.equal(bad.length, 0, bad.map((c) => `${c.id}: ${c.errorMessage}`).join("\n"));
        assert.equal(code, 0, `exit ${code}: ${log.slice(-1500)}`);
      });
    }
  };
  await Promise.all([worker(), worker()]);
}

await check(`${LABEL}/stateful: server`, async () => {
  const s = await startHttp(ws);
  await scenarios(`${LABEL}/stateful`, s.mcp, INCLUDED);
  await s.stop();
});
await check(`${LABEL}/stateless: server`, async () => {
  const s = await startHttp(ws, ["--stateless"]);
  await scenarios(`${LABEL}/stateless`, s.mcp, STATELESS);
  await s.stop();
});
console.log(`excluded: ${Object.keys(EXCLUDED).join("; ")} (see README.md)`);

await finish(LABEL);
