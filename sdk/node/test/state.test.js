'use strict';
// Unit tests of the pure parts: applying batches and resets, diffing a reset against the cache,
// the cache file's content round trip, paths, backoff bounds.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { SyncState, diff } = require('../src/state');
const { normalizePath, normalizePrefixes, covers } = require('../src/paths');
const { backoffDelay, CAP_MS } = require('../src/backoff');
const { writeAtomic, readCache } = require('../src/cachefile');
const { SetpointError } = require('../src/errors');

/** @param {string} p @param {unknown} v @param {number} version @param {number} revision */
const wireEntry = (p, v, version, revision, format = 'json') => ({
  path: p, value: JSON.stringify(v), format, version, revision,
});
const reset = (revision, state) => ({ revision, reset: true, events: [], state });
const put = (p, v, old, version, revision) => ({
  deleted: false, path: p, newValue: JSON.stringify(v),
  oldValue: old === undefined ? undefined : JSON.stringify(old), version, revision, format: 'json',
});
const del = (p, old, version, revision) => ({
  deleted: true, path: p, newValue: undefined, oldValue: JSON.stringify(old), version, revision,
  format: 'json',
});

test('the first reset fills the cache and fires nothing', () => {
  const s = new SyncState(null, ['/']);
  assert.equal(s.hasState, false);
  const changes = s.apply(reset(5, [wireEntry('/a/x', 1, 1, 3), wireEntry('/a/y', 'text', 2, 5, 'text')]));
  assert.deepEqual(changes, []);
  assert.equal(s.revision, 5);
  assert.deepEqual(s.entries.get('/a/y'), { value: 'text', format: 'text', version: 2, revision: 5 });
});

test('a batch applies in order and reports old and new values', () => {
  const s = new SyncState(null, ['/']);
  s.apply(reset(5, [wireEntry('/a/x', { n: 1 }, 1, 3), wireEntry('/a/gone', true, 1, 4)]));
  const changes = s.apply({
    revision: 6, reset: false, state: [],
    events: [put('/a/x', { n: 2 }, { n: 1 }, 2, 6), put('/a/new', [1], undefined, 1, 6), del('/a/gone', true, 2, 6)],
  });
  assert.deepEqual(changes.map((c) => [c.path, c.value, c.oldValue, c.version, c.deleted]), [
    ['/a/x', { n: 2 }, { n: 1 }, 2, false],
    ['/a/new', [1], undefined, 1, false],
    ['/a/gone', undefined, true, 2, true],
  ]);
  assert.equal(s.revision, 6);
  assert.equal(s.entries.has('/a/gone'), false);
  assert.deepEqual(s.entries.get('/a/x')?.value, { n: 2 });
});

test('values are frozen so no caller can change what others see', () => {
  const s = new SyncState(null, ['/']);
  s.apply(reset(1, [wireEntry('/o', { list: [1, 2] }, 1, 1)]));
  const value = /** @type {any} */ (s.entries.get('/o')?.value);
  assert.throws(() => { value.list.push(3); }, TypeError);
});

test('a value that is not JSON text is an error, not a silent string', () => {
  const s = new SyncState(null, ['/']);
  assert.throws(() => s.apply(reset(1, [{ path: '/bad', value: 'not json', format: 'json', version: 1, revision: 1 }])),
    (e) => e instanceof SetpointError && /\/bad/.test(e.message));
});

test('a reset after a sync fires exactly the differences', () => {
  const s = new SyncState('prod', ['/a']);
  s.apply(reset(5, [wireEntry('/a/same', 1, 1, 1), wireEntry('/a/changed', 'old', 1, 2), wireEntry('/a/removed', 9, 3, 4)]));
  const changes = s.apply(reset(9, [wireEntry('/a/same', 1, 1, 1), wireEntry('/a/changed', 'new', 2, 8), wireEntry('/a/added', null, 1, 9)]));
  assert.deepEqual(changes, [
    { path: '/a/added', value: null, oldValue: undefined, version: 1, revision: 9, deleted: false, format: 'json' },
    { path: '/a/changed', value: 'new', oldValue: 'old', version: 2, revision: 9, deleted: false, format: 'json' },
    { path: '/a/removed', value: undefined, oldValue: 9, version: 3, revision: 9, deleted: true, format: 'json' },
  ]);
  assert.deepEqual([...s.entries.keys()].sort(), ['/a/added', '/a/changed', '/a/same']);
});

test('diff compares values structurally, not by identity', () => {
  const before = new Map([['/p', { value: { a: [1, { b: 2 }] }, format: 'json', version: 1, revision: 1 }]]);
  const same = new Map([['/p', { value: { a: [1, { b: 2 }] }, format: 'json', version: 1, revision: 1 }]]);
  const other = new Map([['/p', { value: { a: [1, { b: 3 }] }, format: 'json', version: 1, revision: 1 }]]);
  assert.deepEqual(diff(before, same, 2), []);
  assert.equal(diff(before, other, 2).length, 1);
});

test('the cache file content round-trips and a reset after loading it fires the differences', () => {
  const s = new SyncState('prod', ['/a', '/b']);
  s.apply(reset(7, [wireEntry('/a/x', { deep: [1, 'two'] }, 3, 6), wireEntry('/b/t', 'hello', 1, 7, 'text')]));
  const file = JSON.parse(JSON.stringify(s.toFile()));
  assert.deepEqual(file, {
    format: 1, env: 'prod', prefixes: ['/a', '/b'], revision: 7,
    entries: {
      '/a/x': { value: { deep: [1, 'two'] }, format: 'json', version: 3, revision: 6 },
      '/b/t': { value: 'hello', format: 'text', version: 1, revision: 7 },
    },
  });
  const loaded = new SyncState('prod', ['/a', '/b']);
  assert.equal(loaded.loadFile(file), null);
  assert.equal(loaded.revision, 7);
  assert.deepEqual(loaded.entries, s.entries);
  const changes = loaded.apply(reset(8, [wireEntry('/a/x', { deep: [1, 'two'] }, 3, 6), wireEntry('/b/t', 'bye', 2, 8, 'text')]));
  assert.deepEqual(changes.map((c) => [c.path, c.oldValue, c.value]), [['/b/t', 'hello', 'bye']]);
});

test('a cache file for another env, other prefixes or another format is refused with a reason', () => {
  const s = new SyncState('prod', ['/a']);
  s.apply(reset(3, [wireEntry('/a/x', 1, 1, 3)]));
  const file = s.toFile();
  const check = (/** @type {SyncState} */ target, /** @type {unknown} */ content, /** @type {RegExp} */ reason) => {
    const refused = target.loadFile(content);
    assert.match(String(refused), reason);
    assert.equal(target.hasState, false);
  };
  check(new SyncState('dev', ['/a']), file, /env/);
  check(new SyncState(null, ['/a']), file, /env/);
  check(new SyncState('prod', ['/']), file, /prefixes/);
  check(new SyncState('prod', ['/a']), { ...file, format: 2 }, /format/);
  check(new SyncState('prod', ['/a']), { ...file, entries: { '/a/x': { value: 1 } } }, /malformed/);
  check(new SyncState('prod', ['/a']), [], /prefixes|format/);
});

test('writeAtomic replaces the file whole and leaves no temp file behind', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setpoint-node-cache-'));
  try {
    const file = path.join(dir, 'cache.json');
    assert.equal(readCache(file), undefined);
    writeAtomic(file, { n: 1 });
    writeAtomic(file, { n: 2, big: 'x'.repeat(100_000) });
    const content = /** @type {any} */ (readCache(file));
    assert.equal(content.n, 2);
    assert.deepEqual(fs.readdirSync(dir), ['cache.json']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('paths and prefixes normalize and cover segment-wise', () => {
  assert.equal(normalizePath('/a/b/'), '/a/b');
  assert.equal(normalizePath('/'), '/');
  for (const bad of ['a/b', '', '/a//b', 42]) {
    assert.throws(() => normalizePath(bad), (e) => e instanceof SetpointError && e.code === 'invalid');
  }
  assert.deepEqual(normalizePrefixes(['/b', '/a/x', '/a', '/b/']), ['/a', '/b']);
  assert.deepEqual(normalizePrefixes(['/x', '/']), ['/']);
  assert.equal(covers('/a', '/a'), true);
  assert.equal(covers('/a', '/a/b'), true);
  assert.equal(covers('/a', '/ab'), false);
  assert.equal(covers('/', '/anything'), true);
});

test('backoff is full jitter, doubling from 100 ms and capped at 10 s', () => {
  const ceiling = (/** @type {number} */ attempt) => backoffDelay(attempt, () => 0.999999);
  assert.deepEqual([0, 1, 2, 3].map(ceiling), [99, 199, 399, 799]);
  assert.equal(ceiling(7), CAP_MS - 1);
  assert.equal(ceiling(1000), CAP_MS - 1);
  assert.equal(backoffDelay(5, () => 0), 0);
});
