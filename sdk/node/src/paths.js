'use strict';
// Config paths as the SDK accepts them from callers: absolute, `/`-separated, no trailing slash
// (except the root `/`). Only syntax and prefix coverage live here; the edge validates the rest.

const { invalid } = require('./errors');

/**
 * Checks and normalizes a path or prefix given by the caller ("/a/b/" → "/a/b").
 * @param {unknown} path
 * @param {string} what how the error message names it ("a path", "a prefix")
 * @returns {string}
 */
function normalizePath(path, what = 'a path') {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw invalid(`${what} must be a string starting with "/", got ${JSON.stringify(path)}`);
  }
  const trimmed = path.length > 1 ? path.replace(/\/+$/, '') : path;
  if (trimmed === '') return '/';
  if (trimmed.includes('//')) {
    throw invalid(`${what} has an empty segment: ${JSON.stringify(path)}`);
  }
  return trimmed;
}

/**
 * Whether `path` lies at or below `prefix` (segment-wise: "/ab" is not below "/a").
 * @param {string} prefix @param {string} path
 */
function covers(prefix, path) {
  if (prefix === '/') return true;
  return path === prefix || path.startsWith(prefix + '/');
}

/**
 * Sorted, deduplicated prefixes with every prefix below another dropped, so that two clients
 * given ["/b", "/a", "/a/x"] and ["/a", "/b"] agree (and their cache files match).
 * @param {string[]} prefixes
 */
function normalizePrefixes(prefixes) {
  const sorted = [...new Set(prefixes.map((p) => normalizePath(p, 'a prefix')))].sort(
    (a, b) => a.length - b.length,
  );
  /** @type {string[]} */
  const kept = [];
  for (const prefix of sorted) {
    if (!kept.some((k) => covers(k, prefix))) kept.push(prefix);
  }
  return kept.sort();
}

module.exports = { normalizePath, covers, normalizePrefixes };
