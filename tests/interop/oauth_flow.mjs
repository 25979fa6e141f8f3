// OAuth 2.1 end to end (issue 24) with parts nobody here wrote: the npm `oidc-provider` (a
// certified OpenID provider: dynamic client registration, PKCE, resource indicators, JWT access
// tokens) as the authorization server, and the TypeScript SDK's OAuth client (an
// OAuthClientProvider driven by StreamableHTTPClientTransport and auth()) against
// `i2v-mcp serve --http`. The browser step is headless: the authorization URL is followed with
// redirects and cookies, and the provider's interaction is finished at once for a chosen user.
// Two users each see only their own task; an admin sees both.
// Usage: node oauth_flow.mjs <path to i2v-mcp>
import http from "node:http";
import fs from "node:fs";
import Provider, { errors } from "oidc-provider";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  assert, assertToolError, check, finish, freePort, onCleanup, startHttp, taskOf, watchdog, within, workspace,
} from "./common.mjs";

const LABEL = "oauth_flow";
const version = (p) => JSON.parse(fs.readFileSync(new URL(`./node_modules/${p}/package.json`, import.meta.url))).version;
console.log(`oidc-provider ${version("oidc-provider")}, @modelcontextprotocol/sdk ${version("@modelcontextprotocol/sdk")}, node ${process.version}`);
watchdog(150_000, LABEL);

// ---------------------------------------------------------------------------------------------
// The authorization server.

const asPort = await freePort();
const issuer = `http://127.0.0.1:${asPort}`;
let resource = null; // the MCP server's /mcp, known once it listens
let nextUser = null; // who "logs in" at the next interaction
const SCOPES = { alice: "mcp:tools", bob: "mcp:tools", carol: "mcp:tools i2v:admin" };

const provider = new Provider(issuer, {
  clients: [],
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: "mcp:tools i2v:admin",
          audience: resource,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
  pkce: { required: () => true },
  // Listed so dynamic registration accepts a client asking for them; granted per user below.
  scopes: ["openid", "offline_access", "mcp:tools", "i2v:admin"],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.on("server_error", (ctx, e) => console.log(`(oidc-provider server_error: ${e.stack})`));

/** The interaction: whoever `nextUser` is logs in and is granted that user's scopes. */
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (process.env.DEBUG_BROWSE) console.log(`  interaction ${details.prompt.name} ${JSON.stringify(details.prompt.reasons)} ${JSON.stringify(details.prompt.details)}`);
  const accountId = nextUser;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  const entitled = SCOPES[accountId].split(" ");
  const asked = (details.params.scope ?? "").split(" ").filter((s) => s === "openid" || entitled.includes(s));
  if (asked.length) grant.addOIDCScope(asked.join(" "));
  grant.addResourceScope(resource, SCOPES[accountId]);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const asServer = http.createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e.stack));
    });
  } else callback(req, res);
});
await new Promise((r) => asServer.listen(asPort, "127.0.0.1", r));
onCleanup(() => new Promise((r) => asServer.close(r)));

// ---------------------------------------------------------------------------------------------
// The MCP server, trusting that issuer.

const ws = workspace();
Object.assign(ws.env, {
  I2V_MCP_OAUTH_ISSUER: issuer,
  I2V_MCP_OAUTH_REQUIRED_SCOPES: "mcp:tools",
  I2V_MCP_AUTH_TOKEN: "interop-static-token-0123456789abcdef",
});
const srv = await startHttp(ws);
resource = srv.mcp;

// ---------------------------------------------------------------------------------------------
// The client side: an OAuthClientProvider per user, and a headless "browser".

const redirectUri = `http://127.0.0.1:${await freePort()}/callback`;

/** Follows the authorization URL (redirects, cookies) to the redirect URI; returns the code. */
async function browse(start) {
  const jar = new Map();
  let url = start;
  for (let hop = 0; hop < 20; hop++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const r = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
    for (const c of r.headers.getSetCookie()) {
      const kv = c.split(";")[0];
      const i = kv.indexOf("=");
      jar.set(kv.slice(0, i), kv.slice(i + 1));
    }
    const loc = r.headers.get("location");
    if (!loc) throw new Error(`no redirect from ${url}: ${r.status} ${(await r.text()).slice(0, 500)}`);
    const next = new URL(loc, url);
    if (process.env.DEBUG_BROWSE) console.log(`  ${r.status} ${url} -> ${next.href}`);
    if (next.href.startsWith(redirectUri)) {
      if (next.searchParams.get("error")) throw new Error(`authorization refused: ${next.search}`);
      return next.searchParams.get("code");
    }
    url = next.href;
  }
  throw new Error("too many redirects");
}

class MemoryProvider {
  constructor(user) {
    this.user = user;
    this.code = null;
  }
  get redirectUrl() {
    return redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: `interop ${this.user}`,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(t) {
    this.saved = t;
  }
  async redirectToAuthorization(url) {
    this.authorizationUrl = url;
    nextUser = this.user;
    this.code = await browse(url.href);
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

const clients = {};
async function connected(p) {
  const c = new Client({ name: `interop-${p.user}`, version: "0" });
  await within(15_000, "connect", c.connect(new StreamableHTTPClientTransport(new URL(srv.mcp), { authProvider: p })));
  onCleanup(() => c.close());
  return c;
}

// alice and bob: the transport meets the 401 and runs the SDK's flow (discovery, registration,
// authorization with PKCE); then finishAuth trades the code.
for (const user of ["alice", "bob"]) {
  await check(`${user}: 401, discovery, registration, PKCE authorization, token, connect`, async () => {
    const p = new MemoryProvider(user);
    const first = new Client({ name: `interop-${user}`, version: "0" });
    const transport = new StreamableHTTPClientTransport(new URL(srv.mcp), { authProvider: p });
    await assert.rejects(first.connect(transport), (e) => e instanceof UnauthorizedError);
    assert.ok(p.info?.client_id, "registered dynamically");
    const asked = p.authorizationUrl;
    assert.equal(asked.searchParams.get("code_challenge_method"), "S256");
    assert.equal(asked.searchParams.get("resource"), srv.mcp, "RFC 8707 resource");
    assert.ok(p.code, "an authorization code");
    await transport.finishAuth(p.code);
    const payload = JSON.parse(Buffer.from(p.saved.access_token.split(".")[1], "base64url"));
    assert.equal(payload.sub, user);
    assert.equal(payload.aud, srv.mcp);
    assert.equal(payload.iss, issuer);
    assert.doesNotMatch(payload.scope ?? "", /i2v:admin/, "no admin for a plain user");
    clients[user] = await connected(p);
  });
}

// carol: auth() called directly, asking for the admin scope too.
await check("carol (admin): auth() with scope mcp:tools i2v:admin, connect", async () => {
  const p = new MemoryProvider("carol");
  const scope = "mcp:tools i2v:admin";
  assert.equal(await auth(p, { serverUrl: srv.mcp, scope }), "REDIRECT");
  assert.equal(await auth(p, { serverUrl: srv.mcp, scope, authorizationCode: p.code }), "AUTHORIZED");
  assert.match(p.saved.scope ?? "", /i2v:admin/);
  clients.carol = await connected(p);
});

const call = (c, name, args) =>
  within(60_000, `tools/call ${name}`, c.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: 60_000 }));

const ids = {};
await check("alice and bob each create a task (same idempotency key)", async () => {
  for (const user of ["alice", "bob"]) {
    const r = await call(clients[user], "create_i2v_task", {
      image: ws.image, prompt: "the lighthouse light turns", provider: "local", idempotency_key: "interop-key",
    });
    assert.notEqual(r.isError, true, JSON.stringify(r.content));
    ids[user] = taskOf(r).task_id;
  }
  assert.notEqual(ids.alice, ids.bob);
});

const listed = async (user) =>
  new Set(taskOf(await call(clients[user], "list_tasks", {})).tasks.map((t) => t.task_id));

await check("each user lists only their own task; the admin lists both", async () => {
  assert.deepEqual(await listed("alice"), new Set([ids.alice]));
  assert.deepEqual(await listed("bob"), new Set([ids.bob]));
  const all = await listed("carol");
  assert.ok(all.has(ids.alice) && all.has(ids.bob), [...all].join(","));
});

await check("another user's task is not_found (get_task, cancel_task, resources/read)", async () => {
  assertToolError(await call(clients.bob, "get_task", { task_id: ids.alice }), "not_found");
  assertToolError(await call(clients.alice, "cancel_task", { task_id: ids.bob }), "not_found");
  await assert.rejects(clients.bob.readResource({ uri: `i2v://tasks/${ids.alice}` }));
  const t = taskOf(await call(clients.carol, "get_task", { task_id: ids.alice }));
  assert.equal(t.task_id, ids.alice);
});

await check("a tokenless POST is 401 naming the resource metadata", async () => {
  const r = await fetch(srv.mcp, { method: "POST", headers: { "content-type": "application/json", accept: "application/json, text/event-stream" }, body: "{}" });
  assert.equal(r.status, 401);
  assert.match(r.headers.get("www-authenticate") ?? "", /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
});

await finish(LABEL);
