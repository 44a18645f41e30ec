// An outside judge: the official MCP TypeScript SDK client drives a real pipeline through
// oc-deploy over stdio or streamable HTTP: list tools, deploy to staging while recording
// progress notifications, then promote to production and answer the server's elicitation as
// the human (approve). Prints one JSON summary on stdout; the Rust test asserts on it.
// Usage: node ts_pipeline.mjs <stdio|http> <oc-deploy binary> <project dir>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { deadline, startHttpServer } from "./serve_http.mjs";

const [mode, bin, project] = process.argv.slice(2);
if (!["stdio", "http"].includes(mode) || !bin || !project) {
  console.error("usage: node ts_pipeline.mjs <stdio|http> <oc-deploy binary> <project dir>");
  process.exit(64);
}
deadline(60_000, `ts_pipeline ${mode}`);

// Each tool call is bounded well below the whole run's deadline.
const CALL = { timeout: 30_000 };

let server = null;
let transport = null;
let serverStderr = () => "";
async function connectTransport() {
  if (mode === "stdio") {
    const t = new StdioClientTransport({ command: bin, args: ["serve", "--project-dir", project], stderr: "pipe" });
    // Drain the server's log so that it can never block on a full pipe; keep the tail for errors.
    let tail = "";
    t.stderr?.on("data", (d) => (tail = (tail + d.toString()).slice(-8000)));
    serverStderr = () => tail;
    return t;
  }
  server = await startHttpServer(bin, project);
  serverStderr = server.stderr;
  return new StreamableHTTPClientTransport(new URL(server.url));
}

const client = new Client({ name: "oc-deploy-ts-judge", version: "1.0.0" }, { capabilities: { elicitation: {} } });

// The human: approves every confirmation the server asks for, and remembers what it was shown.
const elicitations = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  elicitations.push({
    message: request.params.message,
    fields: Object.keys(request.params.requestedSchema?.properties ?? {}),
  });
  return { action: "accept", content: { approve: true, note: "approved by the TS SDK judge" } };
});

const summary = { transport: mode };
try {
  transport = await connectTransport();
  await client.connect(transport);
  summary.server = client.getServerVersion();
  // Only the HTTP transport records the negotiated version (it sends it as a header).
  summary.protocolVersion = transport.protocolVersion ?? null;
  summary.capabilities = client.getServerCapabilities();

  const { tools } = await client.listTools(undefined, CALL);
  summary.tools = tools.map((t) => t.name);

  const stagingProgress = [];
  const staging = await client.callTool({ name: "deploy_staging", arguments: {} }, undefined, {
    ...CALL,
    onprogress: (p) => stagingProgress.push(p),
  });
  summary.staging = {
    isError: staging.isError ?? false,
    status: staging.structuredContent?.status,
    version: staging.structuredContent?.version,
    steps: (staging.structuredContent?.steps ?? []).map((s) => `${s.name}:${s.status}`),
    progress: stagingProgress,
  };

  const prodProgress = [];
  const prod = await client.callTool({ name: "deploy_prod", arguments: {} }, undefined, {
    ...CALL,
    onprogress: (p) => prodProgress.push(p),
  });
  summary.prod = {
    isError: prod.isError ?? false,
    status: prod.structuredContent?.status,
    version: prod.structuredContent?.version,
    confirmed_by: prod.structuredContent?.confirmed_by ?? null,
    text: (prod.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n"),
    progress: prodProgress,
  };
  summary.elicitations = elicitations;
} catch (e) {
  summary.error = String(e?.stack ?? e);
  summary.serverStderr = serverStderr();
} finally {
  await client.close().catch(() => {});
  if (server) await server.stop();
}
console.log(JSON.stringify(summary));
process.exit(summary.error ? 1 : 0);
