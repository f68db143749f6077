'use strict';
// Drives test/conformance-driver.js over its line protocol (tests/conformance/README.md) against a
// real `setpoint dev`, the way the conformance orchestrator does: answers carry their seq, errors
// their kind, callbacks print change lines, and a failing callback's NACK reaches the writer.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const { DevServer, waitUntil } = require('./harness');

class Driver {
  constructor() {
    this.child = spawn(process.execPath, [path.join(__dirname, 'conformance-driver.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    /** @type {any[]} */
    this.events = [];
    /** @type {Map<number, (answer: any) => void>} */
    this.pending = new Map();
    /** @type {string[]} */
    this.garbage = [];
    this.seq = 0;
    readline.createInterface({ input: /** @type {import('node:stream').Readable} */ (this.child.stdout) }).on('line', (line) => {
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        this.garbage.push(line);
        return;
      }
      if (typeof message.seq === 'number') this.pending.get(message.seq)?.(message);
      else this.events.push(message);
    });
  }

  /** @param {Record<string, unknown>} command @returns {Promise<any>} */
  send(command) {
    this.seq += 1;
    const seq = this.seq;
    return new Promise((resolve) => {
      this.pending.set(seq, resolve);
      /** @type {import('node:stream').Writable} */ (this.child.stdin).write(JSON.stringify({ seq, ...command }) + '\n');
    });
  }

  /** Closes stdin; resolves to the exit code. */
  end() {
    return new Promise((resolve) => {
      this.child.once('exit', resolve);
      /** @type {import('node:stream').Writable} */ (this.child.stdin).end();
    });
  }
}

test('the conformance driver speaks the line protocol', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  await server.put('/app/a', { n: 1 });
  const driver = new Driver();
  t.after(() => driver.child.kill('SIGKILL'));

  assert.deepEqual(await driver.send({ cmd: 'get', path: '/app/a' }),
    { seq: 1, ok: false, error: { kind: 'invalid', message: 'no client: send "open" first' } });
  assert.deepEqual(await driver.send({ cmd: 'open', address: server.address, env: null, prefixes: ['/app'],
    cache_path: null, instance_id: 'driver-1', token: null, labels: { zone: 'eu-1' } }), { seq: 2, ok: true });
  assert.deepEqual(await driver.send({ cmd: 'wait_ready', timeout_ms: 10_000 }), { seq: 3, ok: true });
  assert.deepEqual(await driver.send({ cmd: 'get', path: '/app/a' }), { seq: 4, ok: true, value: { n: 1 }, version: 1 });
  assert.equal((await driver.send({ cmd: 'get', path: '/app/none' })).error.kind, 'not_found');
  assert.deepEqual(await driver.send({ cmd: 'is_stale' }), { seq: 6, ok: true, stale: false });
  assert.deepEqual(await driver.send({ cmd: 'watch', watch_id: 'w1', prefix: '/app', fail_paths: ['/app/bad'] }),
    { seq: 7, ok: true });

  const bad = await server.put('/app/bad', 'x');
  await server.put('/app/a', { n: 2 });
  await waitUntil(() => driver.events.length >= 2, 'two change lines');
  const [first, second] = driver.events;
  assert.equal(typeof first.at_ms, 'number');
  assert.deepEqual({ ...first, at_ms: 0 }, { event: 'change', watch_id: 'w1', path: '/app/bad', value: 'x',
    old_value: null, version: 1, revision: bad.revision, deleted: false, at_ms: 0 });
  assert.deepEqual([second.path, second.old_value, second.value, second.version], ['/app/a', { n: 1 }, { n: 2 }, 2]);
  const record = await waitUntil(async () => {
    const r = await server.clientRecord('driver-1');
    return r?.nacks >= 1 && r;
  }, 'the NACK at the writer');
  assert.equal(record.last_error.error, 'injected failure at /app/bad');
  assert.deepEqual(record.labels, { zone: 'eu-1' });

  assert.deepEqual(await driver.send({ cmd: 'unwatch', watch_id: 'w1' }), { seq: 8, ok: true });
  assert.deepEqual(await driver.send({ cmd: 'close' }), { seq: 9, ok: true });
  assert.equal((await driver.send({ cmd: 'get', path: '/app/a' })).error.kind, 'closed');
  assert.equal(await driver.end(), 0);
  assert.deepEqual(driver.garbage, [], 'stdout carries protocol lines only');
});
