'use strict';
// The package as users load it: by name, from CommonJS and from ESM, with the error hierarchy
// intact, and usable at once without a server.

const test = require('node:test');
const assert = require('node:assert/strict');

test('require and import by package name expose the same API', async () => {
  const cjs = require('@setpoint/sdk');
  const esm = await import('@setpoint/sdk');
  for (const name of ['Client', 'SetpointError', 'NotFoundError', 'NotSyncedError', 'UnauthorizedError', 'TimeoutError', 'ClosedError']) {
    assert.equal(typeof cjs[name], 'function', `require: ${name}`);
    assert.equal(esm[name], cjs[name], `import: ${name}`);
  }
  const error = new cjs.UnauthorizedError('refused');
  assert.ok(error instanceof cjs.SetpointError && error instanceof Error);
  assert.equal(error.code, 'unauthorized');
  assert.equal(error.name, 'UnauthorizedError');
});

test('options are validated once, at construction', () => {
  const { Client, SetpointError } = require('@setpoint/sdk');
  const invalid = (/** @type {any} */ e) => e instanceof SetpointError && e.code === 'invalid';
  assert.throws(() => new Client(''), invalid);
  assert.throws(() => new Client('127.0.0.1:1', { prefixes: [] }), invalid);
  assert.throws(() => new Client('127.0.0.1:1', { prefixes: ['no-slash'] }), invalid);
  assert.throws(() => new Client('127.0.0.1:1', { labels: { zone: /** @type {any} */ (1) } }), invalid);
});

test('a new client is usable at once: stale, not synced, typed errors', async () => {
  const { Client, NotSyncedError } = require('@setpoint/sdk');
  const client = new Client('127.0.0.1:1', { prefixes: ['/b', '/a/x', '/a'] });
  try {
    assert.deepEqual(client.prefixes, ['/a', '/b']);
    assert.match(client.instanceId, new RegExp(`-${process.pid}-[0-9a-f]{8}$`));
    assert.equal(client.isStale(), true);
    assert.throws(() => client.get('/a/x'), NotSyncedError);
  } finally {
    await client.close();
  }
});
