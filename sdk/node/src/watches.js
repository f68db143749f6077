'use strict';
// The watches registered on a client and the running of their callbacks: one change at a time,
// in order, each callback awaited before the next, a throw or rejection caught and turned into a
// NACK (path, message). Knows nothing of the session; the client sends the NACKs in its receipt.

const { covers } = require('./paths');

/**
 * @typedef {(event: import('./state').ChangeEvent) => unknown} Callback
 * @typedef {{prefix: string, callback: Callback, active: boolean}} Watch
 * @typedef {{path: string, error: string}} Failure
 */

class Watches {
  /** @type {Set<Watch>} */
  #watches = new Set();
  #stopped = false;

  /**
   * Registers a callback; the returned function unregisters it (a running call finishes).
   * @param {string} prefix normalized @param {Callback} callback
   */
  add(prefix, callback) {
    /** @type {Watch} */
    const watch = { prefix, callback, active: true };
    this.#watches.add(watch);
    return () => {
      watch.active = false;
      this.#watches.delete(watch);
    };
  }

  /** No callback runs after this, not even for a dispatch already under way. */
  stopAll() {
    this.#stopped = true;
    for (const watch of this.#watches) watch.active = false;
    this.#watches.clear();
  }

  /**
   * Runs the callbacks `changes` trigger; returns one failure per callback that failed.
   * @param {import('./state').ChangeEvent[]} changes
   * @param {(failure: Failure, error: unknown) => void} onFailure
   * @returns {Promise<Failure[]>}
   */
  async dispatch(changes, onFailure) {
    /** @type {Failure[]} */
    const failures = [];
    for (const change of changes) {
      const event = Object.freeze({ ...change });
      // A snapshot: a watch added by a callback starts with the next change, not this one.
      for (const watch of [...this.#watches]) {
        if (!watch.active || this.#stopped || !covers(watch.prefix, change.path)) continue;
        try {
          await watch.callback(event);
        } catch (error) {
          const failure = { path: change.path, error: error instanceof Error ? error.message : String(error) };
          failures.push(failure);
          onFailure(failure, error);
        }
      }
    }
    return failures;
  }
}

module.exports = { Watches };
