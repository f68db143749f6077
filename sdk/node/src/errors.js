'use strict';
// The SDK's error vocabulary. Every error is a `SetpointError` with a `code` that names its kind
// (the same words the conformance driver reports), so callers can branch on `instanceof` or on
// `code` alike. This module only defines errors; it maps no gRPC status (see `status.js`).

/** @typedef {'not_found'|'not_synced'|'unauthorized'|'timeout'|'closed'|'invalid'|'other'} ErrorCode */

class SetpointError extends Error {
  /**
   * @param {string} message
   * @param {{code?: ErrorCode, cause?: unknown}} [options]
   */
  constructor(message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SetpointError';
    /** @type {ErrorCode} */
    this.code = options.code ?? 'other';
  }
}

/** Synced (or serving a cache file) and the path holds no value. */
class NotFoundError extends SetpointError {
  /** @param {string} path */
  constructor(path) {
    super(`no value at ${path}`, { code: 'not_found' });
    this.name = 'NotFoundError';
    this.path = path;
  }
}

/** Nothing to serve yet: no first sync and no cache file. */
class NotSyncedError extends SetpointError {
  /** @param {string} [message] */
  constructor(message = 'not synced yet: the first sync has not completed and no cache file was loaded') {
    super(message, { code: 'not_synced' });
    this.name = 'NotSyncedError';
  }
}

/** The edge refused the token (UNAUTHENTICATED or PERMISSION_DENIED). */
class UnauthorizedError extends SetpointError {
  /** @param {string} message @param {unknown} [cause] */
  constructor(message, cause) {
    super(message, { code: 'unauthorized', cause });
    this.name = 'UnauthorizedError';
  }
}

class TimeoutError extends SetpointError {
  /** @param {string} message */
  constructor(message) {
    super(message, { code: 'timeout' });
    this.name = 'TimeoutError';
  }
}

class ClosedError extends SetpointError {
  constructor() {
    super('the client is closed', { code: 'closed' });
    this.name = 'ClosedError';
  }
}

/** @param {string} message */
function invalid(message) {
  return new SetpointError(message, { code: 'invalid' });
}

module.exports = {
  SetpointError,
  NotFoundError,
  NotSyncedError,
  UnauthorizedError,
  TimeoutError,
  ClosedError,
  invalid,
};
