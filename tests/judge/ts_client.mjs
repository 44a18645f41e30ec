// An outside judge: the official MCP TypeScript SDK client lists oc-deploy's tools over stdio
// and calls deploy_status. Usage: node ts_client.mjs <oc-deploy binary> <project dir>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [bin, project] = process.argv.slice(2);
const transport = new StdioClientTransport({ command: bin, args: ["serve", "--project-dir", project], stderr: "pipe" });
// Discard the server's log so that it can never block on a full pipe.
transport.stderr?.resume();
const client = new Client({ name: "oc-deploy-ts-judge", version: "1.0.0" });
await client.connect(transport);
const server = client.getServerVersion();
const { tools } = await client.listTools();
// callTool validates structuredContent against the tool's outputSchema.
const status = await client.callTool({ name: "deploy_status", arguments: {} });
const prod = await client.callTool({ name: "deploy_prod", arguments: { dry_run: true, direct: true } });
console.log(JSON.stringify({
  server,
  tools: tools.map((t) => ({ name: t.name, annotations: t.annotations, hasOutputSchema: !!t.outputSchema })),
  status: { isError: status.isError ?? false, structured: status.structuredContent },
  prodDryRun: { isError: prod.isError ?? false, status: prod.structuredContent?.status },
}));
await client.close();
