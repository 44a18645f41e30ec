// Starts `oc-deploy serve --http 127.0.0.1:PORT` for a judge and stops it again, so that every
// judge that needs the HTTP transport owns exactly one bounded server process.
import { spawn } from "node:child_process";
import net from "node:net";

// A free loopback port: bind port 0, read the port, release it.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

// Starts the server and waits until it accepts connections (at most `readyMs`). The returned
// `stop()` sends SIGTERM, then SIGKILL after 3 s; a process-exit hook kills it in any case, so
// a judge that crashes does not leave a server behind.
export async function startHttpServer(bin, projectDir, { readyMs = 10_000 } = {}) {
  const port = await freePort();
  const child = spawn(bin, ["serve", "--http", `127.0.0.1:${port}`, "--project-dir", projectDir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    // Keep only the tail: it is there to explain a failure, not to archive the log.
    stderr = (stderr + d.toString()).slice(-8000);
  });
  let exited = null;
  const exitedPromise = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    // A binary that cannot be started reports here instead of exiting.
    child.once("error", (e) => {
      exited = { error: String(e) };
      resolve(exited);
    });
  });
  const killOnExit = () => {
    if (exited === null) child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);

  const stop = async () => {
    process.removeListener("exit", killOnExit);
    if (exited !== null) return exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    const result = await exitedPromise;
    clearTimeout(timer);
    return result;
  };

  const deadline = Date.now() + readyMs;
  while (Date.now() < deadline) {
    if (exited !== null) {
      throw new Error(`oc-deploy serve --http exited early (${JSON.stringify(exited)}):\n${stderr}`);
    }
    if (await canConnect(port)) {
      return { port, url: `http://127.0.0.1:${port}/mcp`, stop, stderr: () => stderr };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`oc-deploy serve --http did not listen on 127.0.0.1:${port} within ${readyMs} ms:\n${stderr}`);
}

// Bounds a whole judge run: after `ms` the judge reports the overrun on stderr and exits 2
// (the exit hook above then kills any server it started).
export function deadline(ms, what) {
  const t = setTimeout(() => {
    console.error(`${what}: gave up after ${ms} ms`);
    process.exit(2);
  }, ms);
  t.unref();
  return t;
}
