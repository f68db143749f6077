'use strict';
// What the client holds: the entries under its prefixes at one revision, and the rules that turn
// an update from the edge (a batch or a reset) into a new state plus the change events that
// callbacks see. Pure: no I/O, no clock, no protobuf types — the session layer decodes the wire
// into the plain shapes below first, which is what makes this file unit-testable on its own.

const { SetpointError } = require('./errors');
const { covers } = require('./paths');

/**
 * @typedef {object} Entry
 * @property {unknown} value the decoded JSON value (a string for text and yaml)
 * @property {string} format json, yaml or text
 * @property {number} version
 * @property {number} revision the revision that last changed this path
 */

/**
 * A change as callbacks see it. `value` is undefined for a delete, `oldValue` when the path
 * had no value before.
 * @typedef {object} ChangeEvent
 * @property {string} path
 * @property {unknown} value
 * @property {unknown} oldValue
 * @property {number} version
 * @property {number} revision
 * @property {boolean} deleted
 * @property {string} format
 */

/**
 * An update as the wire carries it, with values still JSON text and numbers as numbers.
 * @typedef {object} WireEvent
 * @property {boolean} deleted
 * @property {string} path
 * @property {string|undefined} oldValue
 * @property {string|undefined} newValue
 * @property {number} version
 * @property {number} revision
 * @property {string} format
 *
 * @typedef {object} WireEntry
 * @property {string} path
 * @property {string} value
 * @property {string} format
 * @property {number} version
 * @property {number} revision
 *
 * @typedef {object} WireUpdate
 * @property {number} revision
 * @property {boolean} reset
 * @property {WireEvent[]} events
 * @property {WireEntry[]} state
 */

/**
 * Decodes a value from the wire: JSON text (a JSON string for text and yaml).
 * @param {string} text @param {string} path
 */
function decodeValue(text, path) {
  try {
    return deepFreeze(JSON.parse(text));
  } catch (error) {
    throw new SetpointError(`the edge sent a value for ${path} that is not JSON text`, {
      cause: error,
    });
  }
}

/**
 * Values are shared between the cache, get() and every callback; freezing them once at decode
 * time keeps one caller's mutation from changing what the others see.
 * @template T @param {T} value @returns {T}
 */
function deepFreeze(value) {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Structural equality of two decoded JSON values. @param {unknown} a @param {unknown} b @returns {boolean} */
function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  }
  const ra = /** @type {Record<string, unknown>} */ (a);
  const rb = /** @type {Record<string, unknown>} */ (b);
  const keys = Object.keys(ra);
  if (keys.length !== Object.keys(rb).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(rb, k) && jsonEqual(ra[k], rb[k]));
}

/** @param {Entry} a @param {Entry} b */
function sameEntry(a, b) {
  return a.version === b.version && a.format === b.format && jsonEqual(a.value, b.value);
}

class SyncState {
  /** @param {string|null} env @param {string[]} prefixes normalized */
  constructor(env, prefixes) {
    this.env = env;
    this.prefixes = prefixes;
    /** @type {Map<string, Entry>} */
    this.entries = new Map();
    /** The last applied revision; null before the first sync or cache load. @type {number|null} */
    this.revision = null;
  }

  /** Whether there is anything to serve: a sync happened or a cache file was loaded. */
  get hasState() {
    return this.revision !== null;
  }

  /**
   * Applies an update and returns the changes callbacks must see, in order. The very first state
   * (no cache, never synced) yields no changes: callbacks fire for changes only.
   * @param {WireUpdate} update
   * @returns {ChangeEvent[]}
   */
  apply(update) {
    const changes = update.reset ? this.#applyReset(update) : this.#applyBatch(update);
    this.revision = update.revision;
    return changes;
  }

  /** @param {WireUpdate} update */
  #applyBatch(update) {
    /** @type {ChangeEvent[]} */
    const changes = [];
    for (const event of update.events) {
      const before = this.entries.get(event.path);
      const oldValue =
        event.oldValue !== undefined ? decodeValue(event.oldValue, event.path) : before?.value;
      const revision = event.revision || update.revision;
      if (event.deleted) {
        this.entries.delete(event.path);
        changes.push({ path: event.path, value: undefined, oldValue, version: event.version,
          revision, deleted: true, format: event.format || before?.format || 'json' });
      } else {
        if (event.newValue === undefined) {
          throw new SetpointError(`the edge sent a put for ${event.path} without a value`);
        }
        const value = decodeValue(event.newValue, event.path);
        this.entries.set(event.path, { value, format: event.format, version: event.version, revision });
        changes.push({ path: event.path, value, oldValue, version: event.version, revision,
          deleted: false, format: event.format });
      }
    }
    return changes;
  }

  /**
   * A reset replaces everything under the prefixes; diffing it against what was held reveals
   * the changes missed while disconnected (or while the edge cut us off), which callbacks must
   * still see.
   * @param {WireUpdate} update
   */
  #applyReset(update) {
    /** @type {Map<string, Entry>} */
    const next = new Map();
    for (const wire of update.state) {
      next.set(wire.path, {
        value: decodeValue(wire.value, wire.path),
        format: wire.format,
        version: wire.version,
        revision: wire.revision,
      });
    }
    const initial = !this.hasState;
    const previous = this.entries;
    // Entries outside the prefixes (none, normally) are kept: a reset speaks only for its prefixes.
    for (const [path, entry] of previous) {
      if (!this.prefixes.some((p) => covers(p, path))) next.set(path, entry);
    }
    this.entries = next;
    if (initial) return [];
    return diff(previous, next, update.revision);
  }

  /** The cache file's content (format 1, shared by all SDKs). */
  toFile() {
    /** @type {Record<string, Entry>} */
    const entries = {};
    for (const [path, entry] of [...this.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      entries[path] = { value: entry.value, format: entry.format, version: entry.version,
        revision: entry.revision };
    }
    return { format: 1, env: this.env, prefixes: this.prefixes, revision: this.revision, entries };
  }

  /**
   * Loads a cache file's content when it was written for the same env and prefixes; returns the
   * reason it was not loaded otherwise (a mismatch is normal after a config change, not an error).
   * @param {unknown} file
   * @returns {string|null} null when loaded
   */
  loadFile(file) {
    if (typeof file !== 'object' || file === null) return 'not a JSON object';
    const f = /** @type {Record<string, unknown>} */ (file);
    if (f.format !== 1) return `format ${JSON.stringify(f.format)} is not 1`;
    if ((f.env ?? null) !== this.env) return `written for env ${JSON.stringify(f.env)}`;
    if (!Array.isArray(f.prefixes) || f.prefixes.join('\n') !== this.prefixes.join('\n')) {
      return `written for prefixes ${JSON.stringify(f.prefixes)}`;
    }
    if (!Number.isSafeInteger(f.revision)) return 'no revision';
    if (typeof f.entries !== 'object' || f.entries === null) return 'no entries';
    /** @type {Map<string, Entry>} */
    const entries = new Map();
    for (const [path, raw] of Object.entries(f.entries)) {
      const e = /** @type {Record<string, unknown>} */ (raw ?? {});
      if (!('value' in e) || typeof e.format !== 'string' || !Number.isSafeInteger(e.version)
        || !Number.isSafeInteger(e.revision)) {
        return `malformed entry for ${path}`;
      }
      entries.set(path, { value: deepFreeze(e.value), format: e.format, version: /** @type {number} */ (e.version),
        revision: /** @type {number} */ (e.revision) });
    }
    this.entries = entries;
    this.revision = /** @type {number} */ (f.revision);
    return null;
  }
}

/**
 * The changes that turn `before` into `after`, sorted by path.
 * @param {Map<string, Entry>} before @param {Map<string, Entry>} after @param {number} revision
 * @returns {ChangeEvent[]}
 */
function diff(before, after, revision) {
  /** @type {ChangeEvent[]} */
  const changes = [];
  for (const [path, entry] of after) {
    const old = before.get(path);
    if (old && sameEntry(old, entry)) continue;
    changes.push({ path, value: entry.value, oldValue: old?.value, version: entry.version,
      revision, deleted: false, format: entry.format });
  }
  for (const [path, old] of before) {
    if (after.has(path)) continue;
    changes.push({ path, value: undefined, oldValue: old.value, version: old.version, revision,
      deleted: true, format: old.format });
  }
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

module.exports = { SyncState, decodeValue, jsonEqual, diff };
