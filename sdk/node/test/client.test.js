'use strict';
// End-to-end tests of the Client against a real `setpoint dev` (see harness.js): sync, get,
// watches (changes only, batches, failing callbacks), environments, the cache file, close,
// reconnect and refused tokens. No mocks of the server.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const {
  Client, SetpointError, NotFoundError, NotSyncedError, UnauthorizedError, TimeoutError, ClosedError,
} = require('..');
const { DevServer, waitUntil, tempDir, record, unique, freePort } = require('./harness');

/** @type {DevServer} */
let server;
/** @type {Client[]} */
const clients = [];

test.before(async () => {
  server = await DevServer.start();
});

test.after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.destroy();
});

/** @param {import('..').ClientOptions} [options] @param {string} [address] */
function open(options = {}, address = server.address) {
  const client = new Client(address, { instanceId: `node-test-${clients.length}`, ...options });
  clients.push(client);
  return client;
}

test('get serves the synced value with its version after waitReady', async () => {
  const p = unique('db/host');
  await server.put(p, 'old-host');
  const written = await server.put(p, { host: 'new-host', port: 5432 });
  const client = open();
  await client.waitReady(10_000);
  const entry = client.get(p);
  assert.deepEqual(entry.value, { host: 'new-host', port: 5432 });
  assert.equal(entry.version, 2);
  assert.equal(entry.version, written.version);
  assert.equal(entry.format, 'json');
  assert.equal(client.isStale(), false);
  assert.throws(() => client.get(`${p}-missing`), (e) => e instanceof NotFoundError && e.code === 'not_found');
  assert.throws(() => client.get('no-slash'), (e) => e instanceof SetpointError && e.code === 'invalid');
});

test('a watch sees only changes, with old and new values, version and revision', async () => {
  const dir = unique('svc');
  await server.put(`${dir}/before`, 1);
  const client = open();
  await client.waitReady(10_000);
  const seen = record(client, dir);
  const other = record(client, unique('elsewhere'));
  const written = await server.put(`${dir}/before`, 2);
  await server.put(`${dir}/added`, 'x');
  await server.del(`${dir}/added`);
  await seen.waitFor(3);
  assert.deepEqual(seen.events.map((e) => [e.path, e.oldValue, e.value, e.deleted]), [
    [`${dir}/before`, 1, 2, false],
    [`${dir}/added`, undefined, 'x', false],
    [`${dir}/added`, 'x', undefined, true],
  ]);
  assert.equal(seen.events[0].version, 2);
  assert.equal(seen.events[0].revision, written.revision);
  assert.ok(seen.events[1].revision > seen.events[0].revision);
  assert.equal(other.events.length, 0, 'a watch of another prefix saw nothing');
  assert.equal(client.get(`${dir}/before`).value, 2, 'the cache is updated before the callback runs');
  assert.throws(() => client.get(`${dir}/added`), NotFoundError);
});

test('a batch arrives as one ordered delivery at one revision', async () => {
  const dir = unique('batch');
  await server.put(`${dir}/c`, 'to-delete');
  const client = open({ prefixes: [dir] });
  await client.waitReady(10_000);
  /** @type {number[]} */
  const deliveries = [];
  const seen = record(client, dir, () => { deliveries.push(Date.now()); });
  await server.rest('POST', '/api/batch', {
    changes: [
      { op: 'put', path: `${dir}/b`, value: 2 },
      { op: 'put', path: `${dir}/a`, value: 1 },
      { op: 'delete', path: `${dir}/c` },
    ],
  });
  await seen.waitFor(3);
  assert.deepEqual(seen.events.map((e) => [e.path, e.value, e.deleted]), [
    [`${dir}/b`, 2, false],
    [`${dir}/a`, 1, false],
    [`${dir}/c`, undefined, true],
  ]);
  assert.equal(new Set(seen.events.map((e) => e.revision)).size, 1, 'one revision for the whole batch');
});

test('an environment client holds effective values and sees override changes', async () => {
  const p = unique('env/host');
  await server.put(p, 'base-host');
  await server.put(`/env/prod${p}`, 'prod-host');
  const client = open({ environment: 'prod' });
  await client.waitReady(10_000);
  assert.equal(client.get(p).value, 'prod-host');
  const seen = record(client, path.posix.dirname(p));
  await server.put(`/env/prod${p}`, 'prod-host-2');
  await seen.waitFor(1);
  assert.equal(seen.events[0].path, p, 'events carry base paths, never /env/prod/…');
  assert.equal(seen.events[0].oldValue, 'prod-host');
  assert.equal(seen.events[0].value, 'prod-host-2');
  await server.put(p, 'base-host-2');
  await server.put(`${p}-other`, 'only-base');
  await seen.waitFor(2);
  assert.equal(seen.events[1].path, `${p}-other`, 'a base change hidden by the override fires nothing');
  assert.equal(client.get(p).value, 'prod-host-2');
});

test('a failing callback is NACKed and later events still arrive', async () => {
  const dir = unique('nack');
  const client = open({ instanceId: `node-nack-${process.pid}` });
  await client.waitReady(10_000);
  /** @type {Error[]} */
  const reported = [];
  client.on('error', (e) => reported.push(e));
  const sync = record(client, dir, (e) => {
    if (e.path.endsWith('/bad-sync')) throw new Error(`injected failure at ${e.path}`);
  });
  const async = record(client, dir, async (e) => {
    await new Promise((resolve) => setImmediate(resolve));
    if (e.path.endsWith('/bad-async')) throw new Error(`injected failure at ${e.path}`);
  });
  await server.put(`${dir}/bad-sync`, 1);
  await server.put(`${dir}/bad-async`, 2);
  await server.put(`${dir}/good`, 3);
  await sync.waitFor(3);
  await async.waitFor(3);
  assert.deepEqual(sync.events.map((e) => e.path), [`${dir}/bad-sync`, `${dir}/bad-async`, `${dir}/good`]);
  assert.equal(client.get(`${dir}/good`).value, 3);
  assert.equal(client.isStale(), false, 'the session survived the failures');
  await waitUntil(() => reported.length >= 2, 'both failures on the error event');
  const record_ = await waitUntil(async () => {
    const r = await server.clientRecord(`node-nack-${process.pid}`);
    return r && r.nacks >= 2 && r;
  }, 'the writer to list the NACKs');
  assert.match(record_.last_error.error, /injected failure at .*bad-async/);
  assert.equal(record_.sdk, `node/${require('../package.json').version}`);
});

test('a stopped watch fires no more', async () => {
  const dir = unique('stop');
  const client = open();
  await client.waitReady(10_000);
  const stopped = record(client, dir);
  const kept = record(client, dir);
  await server.put(`${dir}/a`, 1);
  await stopped.waitFor(1);
  stopped.handle.stop();
  await server.put(`${dir}/a`, 2);
  await kept.waitFor(2);
  assert.equal(stopped.events.length, 1);
  assert.deepEqual(kept.events.map((e) => e.value), [1, 2]);
});

test('a watch outside the client prefixes is refused', () => {
  const client = open({ prefixes: ['/only'] });
  assert.throws(() => client.watch('/other', () => {}), (e) => e instanceof SetpointError && e.code === 'invalid');
  assert.throws(() => client.watch('/onlyx', () => {}), (e) => e instanceof SetpointError && e.code === 'invalid');
  assert.doesNotThrow(() => client.watch('/only/below', () => {}).stop());
});
