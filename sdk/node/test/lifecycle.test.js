'use strict';
// End-to-end tests of the client's life around the server's: the cache file (written, then
// served stale with no server), reconnect and resume after a restart, close releasing every
// resource, a refused token, and Resolve. Each test that stops a server has its own.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const {
  Client, NotSyncedError, UnauthorizedError, TimeoutError, ClosedError, NotFoundError,
} = require('..');
const { DevServer, waitUntil, tempDir, record, freePort } = require('./harness');

/** @param {string} file */
const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));

test('the cache file is written, and a client with no server serves it flagged stale', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cachePath = path.join(dir, 'cache.json');

  await server.put('/app/db/host', 'h1');
  const first = new Client(server.address, { prefixes: ['/app'], environment: null, cachePath });
  await first.waitReady(10_000);
  const written = await server.put('/app/db/host', { host: 'h2' });
  await waitUntil(() => fs.existsSync(cachePath) && readJson(cachePath).revision >= written.revision,
    'the cache file to reach the new revision');
  const file = readJson(cachePath);
  assert.equal(file.format, 1);
  assert.equal(file.env, null);
  assert.deepEqual(file.prefixes, ['/app']);
  assert.deepEqual(file.entries['/app/db/host'], { value: { host: 'h2' }, format: 'json', version: 2, revision: written.revision });
  await first.close();
  assert.deepEqual(fs.readdirSync(dir), ['cache.json'], 'no temp file left behind');

  const nowhere = `127.0.0.1:${await freePort()}`;
  const offline = new Client(nowhere, { prefixes: ['/app'], cachePath });
  t.after(() => offline.close());
  assert.deepEqual(offline.get('/app/db/host').value, { host: 'h2' }, 'served at once, before any connection');
  assert.equal(offline.get('/app/db/host').version, 2);
  assert.equal(offline.isStale(), true);
  assert.throws(() => offline.get('/app/missing'), NotFoundError, 'the cache is an answer: not found, not "not synced"');
  await assert.rejects(offline.waitReady(300), TimeoutError);

  const otherPrefixes = new Client(nowhere, { prefixes: ['/'], cachePath });
  t.after(() => otherPrefixes.close());
  assert.throws(() => otherPrefixes.get('/app/db/host'), NotSyncedError, 'a cache for other prefixes is not used');
});

test('a restarted client resumes from its cache and sees what changed while it was away', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cachePath = path.join(dir, 'cache.json');

  await server.put('/svc/a', 1);
  await server.put('/svc/b', 'kept');
  const first = new Client(server.address, { prefixes: ['/svc'], cachePath });
  await first.waitReady(10_000);
  await first.close();
  await server.put('/svc/a', 2);
  await server.del('/svc/b');

  const second = new Client(server.address, { prefixes: ['/svc'], cachePath });
  t.after(() => second.close());
  const seen = record(second, '/svc');
  assert.equal(second.get('/svc/a').value, 1, 'the cache file is served before the sync');
  await second.waitReady(10_000);
  assert.equal(second.get('/svc/a').value, 2);
  assert.throws(() => second.get('/svc/b'), NotFoundError);
  await seen.waitFor(2);
  assert.deepEqual(seen.events.map((e) => [e.path, e.oldValue, e.value, e.deleted]), [
    ['/svc/a', 1, 2, false],
    ['/svc/b', 'kept', undefined, true],
  ]);
});

test('the client reconnects after the server restarts and catches up', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  await server.put('/r/x', 'before');
  const client = new Client(server.address, { prefixes: ['/r'] });
  t.after(() => client.close());
  await client.waitReady(10_000);
  const seen = record(client, '/r');
  await server.stop();
  await waitUntil(() => client.isStale(), 'the client to notice the lost session');
  assert.equal(client.get('/r/x').value, 'before', 'still served while disconnected');
  await server.restart();
  await server.put('/r/x', 'after');
  await seen.waitFor(1, 20_000);
  assert.equal(seen.events[0].oldValue, 'before');
  assert.equal(seen.events[0].value, 'after');
  assert.equal(client.isStale(), false);
});

test('close ends the session and releases every timer and socket', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  const resources = () => process.getActiveResourcesInfo().filter((r) => r !== 'Immediate').sort();
  await settle();
  const before = resources();
  const client = new Client(server.address, { instanceId: 'node-close-test' });
  await client.waitReady(10_000);
  record(client, '/');
  assert.notDeepEqual(resources(), before, 'a live client holds a socket');
  await client.close();
  await waitUntil(() => JSON.stringify(resources()) === JSON.stringify(before), 'resources back to where they were');
  assert.equal(client.isStale(), true);
  assert.throws(() => client.get('/x'), ClosedError);
  assert.throws(() => client.watch('/', () => {}), ClosedError);
  await assert.rejects(client.waitReady(100), ClosedError);
  await client.close(); // twice is fine
  await waitUntil(async () => (await server.clientRecord('node-close-test'))?.status === 'disconnected',
    'the writer to list the session as disconnected');
});

test('a refused token is a typed error from waitReady and get', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  const client = new Client(server.address, { token: 'spk_not_a_real_key' });
  t.after(() => client.close());
  const errors = /** @type {Error[]} */ ([]);
  client.on('error', (e) => errors.push(e));
  await assert.rejects(client.waitReady(10_000), (e) => e instanceof UnauthorizedError && e.code === 'unauthorized');
  assert.throws(() => client.get('/anything'), UnauthorizedError);
  await assert.rejects(client.waitReady(10), UnauthorizedError, 'later calls fail at once');
  await waitUntil(() => errors.some((e) => e instanceof UnauthorizedError), 'the error event');
  assert.equal(client.isStale(), true);
});

test('a valid admin token is accepted', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  const token = fs.readFileSync(path.join(server.dir, 'data', 'admin.key'), 'utf8').trim();
  await server.put('/k/v', true);
  const client = new Client(server.address, { token, prefixes: ['/k'] });
  t.after(() => client.close());
  await client.waitReady(10_000);
  assert.equal(client.get('/k/v').value, true);
});

test('resolve reads substituted values on demand', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  await server.rest('PUT', '/api/environments/prod', { variables: { REGION: 'eu' } });
  await server.put('/res/url', 'https://${REGION}.example.com');
  const client = new Client(server.address, { environment: 'prod', prefixes: ['/res'] });
  t.after(() => client.close());
  const resolved = await client.resolve('/res/url');
  assert.equal(resolved.document.value, 'https://eu.example.com');
  assert.ok(resolved.revision > 0);
  const raw = await client.resolve('/res/url', { raw: true });
  assert.equal(raw.document.value, 'https://${REGION}.example.com');
  await assert.rejects(client.resolve('/res/none'), (e) => e instanceof NotFoundError || e.code === 'not_found');
});
