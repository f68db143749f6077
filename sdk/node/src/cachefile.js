'use strict';
// Reading and atomically writing the cache file. A crash at any moment leaves either the old file
// or the new one, never a torn one: the content goes to a temp file in the same directory, is
// fsynced, and renamed over the target (rename is atomic within a filesystem). What goes in the
// file is state.js's business; this module only moves bytes.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

/**
 * Writes `content` as JSON to `file` atomically. Synchronous on purpose: writes happen in update
 * order, and close() then has nothing left in flight to flush.
 * @param {string} file @param {unknown} content
 */
function writeAtomic(file, content) {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(content));
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  syncDir(dir);
}

/** Makes the rename itself durable; not every platform lets a directory be fsynced. @param {string} dir */
function syncDir(dir) {
  let fd;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Best effort: the data is already safe in the file, only the rename may be replayed.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * The parsed cache file, or `undefined` when there is none.
 * @param {string} file
 * @returns {unknown}
 */
function readCache(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code === 'ENOENT') return undefined;
    throw error;
  }
  return JSON.parse(text);
}

module.exports = { writeAtomic, readCache };
