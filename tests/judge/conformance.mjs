// An outside judge: the official MCP conformance suite (npm @modelcontextprotocol/conformance)
// against `oc-deploy serve --http`. Every server scenario the suite knows is classified here
// (and in docs/conformance.md): the ones that apply to a product server must pass; the ones
// that need the suite's own fixture tools, resources and prompts must fail, and only because
// the fixture is missing, so that a false pass (a server answering unknown names with success)
// is caught too. Prints one JSON summary on stdout and a table on stderr; exits 1 on any failure.
// Usage: node conformance.mjs <oc-deploy binary> <project dir>
//        node conformance.mjs --url http://127.0.0.1:PORT/mcp   (a server you started yourself)
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deadline, startHttpServer } from "./serve_http.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "node_modules/@modelcontextprotocol/conformance");

// Scenarios that apply to oc-deploy, with why, and the WARNING checks that are allowed because
// the part of the scenario they come from needs a fixture tool.
const APPLIES = {
  "server-initialize": { why: "initialize handshake" },
  ping: { why: "ping utility" },
  "logging-set-level": { why: "the server declares `logging`" },
  "completion-complete": { why: "completion/complete answers (empty list for an unknown prompt)" },
  "tools-list": { why: "every tool has name, description, inputSchema" },
  "resources-list": { why: "the server declares `resources`" },
  "resources-subscribe": { why: "the server declares `resources.subscribe`" },
  "resources-unsubscribe": { why: "the server declares `resources.subscribe`" },
  "prompts-list": { why: "the server declares `prompts`" },
  "server-sse-polling": {
    why: "SSE priming event and retry field on any POST stream (pending in the suite)",
    allowedWarnings: {
      "server-sse-disconnect-resume": "needs the fixture tool test_reconnection, which closes its stream mid-call",
    },
  },
  "server-sse-multiple-streams": { why: "concurrent POST streams in one session" },
  "dns-rebinding-protection": { why: "Host/Origin validation on a loopback bind" },
};

// Scenarios that call the suite's fixtures, which a product server does not have.
const FIXTURE = (kind, name) => `needs the suite's fixture ${kind} ${name}`;
const NOT_APPLICABLE = {
  "tools-call-simple-text": FIXTURE("tool", "test_simple_text"),
  "tools-call-image": FIXTURE("tool", "test_image_content"),
  "tools-call-audio": FIXTURE("tool", "test_audio_content"),
  "tools-call-embedded-resource": FIXTURE("tool", "test_embedded_resource"),
  "tools-call-mixed-content": FIXTURE("tool", "test_multiple_content_types"),
  "tools-call-with-logging": FIXTURE("tool", "test_tool_with_logging"),
  "tools-call-error": FIXTURE("tool", "test_error_handling"),
  "tools-call-with-progress": FIXTURE("tool", "test_tool_with_progress"),
  "tools-call-sampling": FIXTURE("tool", "test_sampling"),
  "tools-call-elicitation": FIXTURE("tool", "test_elicitation"),
  "json-schema-2020-12": FIXTURE("tool", "json_schema_2020_12_tool"),
  "elicitation-sep1034-defaults": FIXTURE("tool", "test_elicitation_sep1034_defaults"),
  "elicitation-sep1330-enums": FIXTURE("tool", "test_elicitation_sep1330_enums"),
  "resources-read-text": FIXTURE("resource", "test://static-text"),
  "resources-read-binary": FIXTURE("resource", "test://static-binary"),
  "resources-templates-read": FIXTURE("resource template", "test://template/{id}/data"),
  "prompts-get-simple": FIXTURE("prompt", "test_simple_prompt"),
  "prompts-get-with-args": FIXTURE("prompt", "test_prompt_with_arguments"),
  "prompts-get-embedded-resource": FIXTURE("prompt", "test_prompt_with_embedded_resource"),
  "prompts-get-with-image": FIXTURE("prompt", "test_prompt_with_image"),
};
// How the server refuses a name it does not have; any other failure is a real problem.
const MISSING_FIXTURE = /tool not found|not found|unknown resource/i;

function run(args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const argv = process.argv.slice(2);
let url;
let server = null;
if (argv[0] === "--url" && argv[1]) {
  url = argv[1];
} else if (argv.length === 2) {
  url = null;
} else {
  console.error("usage: node conformance.mjs <oc-deploy binary> <project dir> | --url URL");
  process.exit(64);
}
deadline(120_000, "conformance");

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const cli = join(pkgDir, typeof pkg.bin === "string" ? pkg.bin : pkg.bin.conformance);
const summary = { suite: { name: pkg.name, version: pkg.version }, scenarios: [], problems: [] };

// 1. The suite's own list: a scenario we have not classified (a new suite version) fails the run.
const listed = await run([cli, "list", "--server"], 30_000);
const suiteScenarios = [...listed.stdout.matchAll(/^\s+- (\S+)\s*$/gm)].map((m) => m[1]);
if (listed.code !== 0 || suiteScenarios.length === 0) {
  summary.problems.push(`\`conformance list --server\` failed (exit ${listed.code}):\n${listed.stderr}`);
}
for (const s of suiteScenarios) {
  if (!(s in APPLIES) && !(s in NOT_APPLICABLE)) {
    summary.problems.push(`scenario ${s} is not classified: add it to conformance.mjs and docs/conformance.md`);
  }
}
for (const s of [...Object.keys(APPLIES), ...Object.keys(NOT_APPLICABLE)]) {
  if (suiteScenarios.length > 0 && !suiteScenarios.includes(s)) {
    summary.problems.push(`scenario ${s} is classified but the suite no longer has it`);
  }
}

// 2. One run of the whole suite ("all" includes the pending scenarios); each scenario writes
// its checks to <out>/server-<scenario>-<time>/checks.json.
const out = mkdtempSync(join(tmpdir(), "ocd-conformance-"));
try {
  if (url === null) {
    server = await startHttpServer(argv[0], argv[1]);
    url = server.url;
  }
  summary.url = url;
  const started = Date.now();
  const suite = await run([cli, "server", "--url", url, "--suite", "all", "--output-dir", out], 90_000);
  summary.durationMs = Date.now() - started;
  if (suite.signal) summary.problems.push(`the suite was killed (${suite.signal}) after 90 s:\n${suite.stdout.slice(-4000)}`);
  const dirs = readdirSync(out);

  for (const name of suiteScenarios) {
    const dir = dirs.find((d) => d.startsWith(`server-${name}-`) && /\d{4}-\d\d-\d\dT/.test(d.slice(`server-${name}-`.length)));
    const applies = name in APPLIES;
    const entry = { name, applies, why: applies ? APPLIES[name].why : NOT_APPLICABLE[name] };
    summary.scenarios.push(entry);
    if (!dir) {
      entry.verdict = "fail";
      entry.problems = ["the suite wrote no result for this scenario"];
      continue;
    }
    const checks = JSON.parse(readFileSync(join(out, dir, "checks.json"), "utf8"));
    const by = (status) => checks.filter((c) => c.status === status);
    entry.checks = { success: by("SUCCESS").length, failure: by("FAILURE").length, warning: by("WARNING").length };
    entry.failures = by("FAILURE").map((c) => `${c.id}: ${c.errorMessage ?? c.description}`);
    entry.warnings = by("WARNING").map((c) => `${c.id}: ${c.errorMessage ?? c.description}`);
    const problems = [];
    if (applies) {
      const allowed = APPLIES[name].allowedWarnings ?? {};
      if (entry.checks.success === 0) problems.push("no check succeeded");
      problems.push(...entry.failures);
      problems.push(...by("WARNING").filter((c) => !(c.id in allowed)).map((c) => `unexpected warning ${c.id}: ${c.errorMessage ?? ""}`));
      entry.verdict = problems.length === 0 ? "pass" : "fail";
    } else if (entry.checks.failure === 0) {
      problems.push(
        "passed although oc-deploy has no such fixture: the server answers an unknown name with success " +
          "(the false-pass trap) or the product grew a test fixture",
      );
      entry.verdict = "unexpected-pass";
    } else {
      problems.push(...entry.failures.filter((f) => !MISSING_FIXTURE.test(f)).map((f) => `fails for another reason than the missing fixture: ${f}`));
      entry.verdict = problems.length === 0 ? "not-applicable" : "fail";
    }
    if (problems.length > 0) entry.problems = problems;
  }
} catch (e) {
  summary.problems.push(String(e?.stack ?? e));
} finally {
  if (server) {
    summary.serverExit = await server.stop();
  }
  rmSync(out, { recursive: true, force: true });
}

summary.passed = summary.scenarios.filter((s) => s.verdict === "pass").map((s) => s.name);
summary.failed = summary.scenarios.filter((s) => s.verdict === "fail" || s.verdict === "unexpected-pass").map((s) => s.name);
summary.notApplicable = summary.scenarios.filter((s) => s.verdict === "not-applicable").map((s) => s.name);

for (const s of summary.scenarios) {
  const mark = { pass: "PASS", "not-applicable": "n/a ", fail: "FAIL", "unexpected-pass": "FAIL" }[s.verdict];
  console.error(`${mark}  ${s.name.padEnd(30)} ${s.why}`);
  for (const p of s.problems ?? []) console.error(`        ${p}`);
}
for (const p of summary.problems) console.error(`PROBLEM ${p}`);
console.error(`conformance ${summary.suite.version}: ${summary.passed.length} applicable scenarios pass, ${summary.failed.length} fail; ${summary.notApplicable.length} not applicable`);
console.log(JSON.stringify(summary));
process.exit(summary.failed.length > 0 || summary.problems.length > 0 ? 1 : 0);
