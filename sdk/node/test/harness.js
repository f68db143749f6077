'use strict';
// The integration tests' harness: a real `setpoint dev` on a free loopback port (binary from
// SETPOINT_BIN, default <repo>/target/debug/setpoint), REST helpers for the server-side steps,
// and wait-until helpers instead of sleeps. A missing binary fails the tests loudly.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

function binary() {
  const bin = process.env.SETPOINT_BIN || path.join(REPO_ROOT, 'target', 'debug', 'setpoint');
  if (!fs.existsSync(bin)) {
    throw new Error(`the setpoint binary is missing at ${bin}: build it (cargo build -p setpoint) or set SETPOINT_BIN`);
  }
  return bin;
}

/** @param {string} prefix */
function tempDir(prefix = 'setpoint-node-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A port nothing listens on right now. @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Polls `predicate` until it returns a truthy value (which is returned) or `timeoutMs` passes.
 * @template T
 * @param {() => T | Promise<T>} predicate
 * @param {string} what said in the timeout error
 * @param {number} [timeoutMs]
 * @returns {Promise<T>}
 */
async function waitUntil(predicate, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await predicate();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

class DevServer {
  /** @param {number} port @param {string} dir */
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.address = `127.0.0.1:${port}`;
    this.base = `http://127.0.0.1:${port}`;
    this.logFile = path.join(dir, 'setpoint.log');
    /** @type {import('node:child_process').ChildProcess|null} */
    this.child = null;
  }

  /** Starts `setpoint dev` on a free port with a fresh data dir and waits for /healthz. */
  static async start() {
    const server = new DevServer(await freePort(), tempDir());
    await server.#spawn();
    return server;
  }

  async #spawn() {
    const log = fs.openSync(this.logFile, 'a');
    const child = spawn(binary(), ['dev', '--listen', this.address, '--data-dir', path.join(this.dir, 'data')], {
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.child = child;
    let exited = false;
    child.once('exit', () => { exited = true; });
    try {
      await waitUntil(async () => {
        if (exited) throw new Error('setpoint dev exited');
        const response = await fetch(`${this.base}/healthz`);
        return response.ok;
      }, 'setpoint dev to answer /healthz', 20_000);
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : error}\n--- setpoint log ---\n${this.logTail()}`);
    }
  }

  logTail() {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Stops the server by its PID and waits for it to exit. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    this.child = null;
  }

  /** Restarts on the same port and data dir (the data survives). */
  async restart() {
    await this.stop();
    await this.#spawn();
  }

  /** Stops and removes the data dir. */
  async destroy() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * A REST call; resolves to the parsed body, throws on a non-2xx status.
   * @param {string} method @param {string} urlPath @param {unknown} [body] @param {Record<string, string>} [headers]
   */
  async rest(method, urlPath, body, headers = {}) {
    const response = await fetch(`${this.base}${urlPath}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${urlPath}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** PUT a value at a config path ("/myapp/x"); returns {revision, version}. @param {string} p @param {unknown} value */
  async put(p, value) {
    const answer = await this.rest('PUT', `/api/config${p}`, { value });
    await this.waitEdge(answer.revision);
    return answer;
  }

  /** @param {string} p */
  async del(p) {
    const answer = await this.rest('DELETE', `/api/config${p}`);
    await this.waitEdge(answer.revision);
    return answer;
  }

  /**
   * Waits until the dev edge holds `revision` (a commit reaches the edge a moment after the
   * writer answers), so a session started after put/del sees the write in its initial state.
   * @param {number} revision
   */
  async waitEdge(revision) {
    await waitUntil(async () => {
      const response = await fetch(`${this.base}/edge/healthz`);
      if (!response.ok) return false;
      const health = await response.json();
      return health.revision >= revision;
    }, `the edge to hold revision ${revision}`);
  }

  /** The writer's view of one client instance, or undefined. @param {string} id */
  async clientRecord(id) {
    const clients = await this.rest('GET', '/api/clients');
    return clients.find((/** @type {{id: string}} */ c) => c.id === id);
  }
}

/**
 * Records every event a watch receives.
 * @param {import('..').Client} client @param {string} prefix
 * @param {(event: import('..').ChangeEvent) => unknown} [extra] runs after recording (may throw)
 */
function record(client, prefix, extra) {
  /** @type {import('..').ChangeEvent[]} */
  const events = [];
  const handle = client.watch(prefix, (event) => {
    events.push(event);
    return extra?.(event);
  });
  return {
    events,
    handle,
    /** @param {number} n @param {number} [timeoutMs] */
    waitFor: (n, timeoutMs = 10_000) =>
      waitUntil(() => events.length >= n, `${n} events under ${prefix} (have ${events.length})`, timeoutMs),
  };
}

let counter = 0;
/** A path prefix no other test uses. @param {string} name */
function unique(name) {
  counter += 1;
  return `/t${process.pid}x${counter}/${name}`;
}

module.exports = { DevServer, waitUntil, tempDir, record, unique, freePort };
