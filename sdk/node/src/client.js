'use strict';
// The Client: one gRPC Session per client, kept alive in the background (reconnecting with
// backoff, resuming from the last applied revision), a local cache served synchronously by get(),
// and watch callbacks run in revision order with their failures sent back as NACKs. The rules for
// applying updates live in state.js; this file does the I/O and the bookkeeping around it.

const { EventEmitter } = require('node:events');
const grpc = require('@grpc/grpc-js');
const { create } = require('@bufbuild/protobuf');

const {
  SetpointError,
  NotFoundError,
  NotSyncedError,
  UnauthorizedError,
  TimeoutError,
  ClosedError,
  invalid,
} = require('./errors');
const { parseOptions, credentials, channelOptions } = require('./options');
const { fromStatus } = require('./status');
const { normalizePath, covers } = require('./paths');
const { SyncState } = require('./state');
const { Watches } = require('./watches');
const { backoffDelay, UNAUTHORIZED_MS } = require('./backoff');
const { writeAtomic, readCache } = require('./cachefile');
const wire = require('./wire');

const SDK_VERSION = require('../package.json').version;

/** How long SessionStarted may take before the attempt counts as failed. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Used when the edge announces no heartbeat interval. */
const DEFAULT_HEARTBEAT_MS = 5_000;
/**
 * A resumed session has no end-of-replay marker: the replay follows SessionStarted at once, so a
 * resume counts as synced when the replay reached the edge's revision, a heartbeat arrives, or
 * the stream has been quiet this long.
 */
const RESUME_SETTLE_MS = 200;
/** How often the watchdog looks for a silent edge. */
const WATCHDOG_TICK_MS = 250;

/**
 * @typedef {object} Session
 * @property {grpc.ClientDuplexStream<any, any>} call
 * @property {boolean} started
 * @property {number} interval
 * @property {number} lastHeard
 * @property {boolean} busy
 * @property {number|null} resumedFrom
 * @property {number} startedRevision
 * @property {boolean} awaitingResume
 * @property {NodeJS.Timeout|null} heartbeat
 * @property {NodeJS.Timeout|null} watchdog
 * @property {NodeJS.Timeout|null} settle
 * @property {string|null} silence why the watchdog cancelled the call
 */

class Client extends EventEmitter {
  /** @type {import('./options').ValidOptions} */ #options;
  /** @type {SyncState} */ #state;
  /** @type {grpc.Client} */ #grpc;
  #closed = false;
  /** True once a first sync completed (a reset, or a resumed stream, applied). */
  #synced = false;
  #edgeStale = false;
  /** @type {Error|null} the last reason the session failed, cleared by a started session */
  #lastError = null;
  #watches = new Watches();
  /** @type {Set<{resolve: () => void, reject: (e: Error) => void}>} */ #waiters = new Set();
  /** @type {Session|null} */ #session = null;
  /** @type {(() => void)|null} */ #wake = null;
  /** @type {Promise<void>} */ #loop;

  /**
   * Creates the client and starts connecting in the background; get() and watch() work at once.
   * @param {string} address host:port of an edge (or `setpoint dev`)
   * @param {import('./options').ClientOptions} [options]
   */
  constructor(address, options = {}) {
    super();
    this.#options = parseOptions(address, options);
    this.#state = new SyncState(this.#options.env, this.#options.prefixes);
    this.#loadCache();
    this.#grpc = new grpc.Client(this.#options.target, credentials(this.#options.tls), channelOptions(this.#options.tls));
    // #run handles its own failures; this catch is for a bug in it, which must not become an
    // unhandled rejection that takes the application down.
    this.#loop = this.#run().catch((error) => this.#report(new SetpointError('the session loop failed', { cause: error })));
  }

  /** The options in effect (prefixes normalized, instance id filled in). */
  get instanceId() {
    return this.#options.instanceId;
  }

  get prefixes() {
    return [...this.#options.prefixes];
  }

  /**
   * Resolves once the first sync completed; rejects with UnauthorizedError when the edge refused
   * the token, TimeoutError after `timeoutMs`, ClosedError when the client is closed.
   * @param {number} [timeoutMs]
   * @returns {Promise<void>}
   */
  waitReady(timeoutMs = 10_000) {
    if (this.#closed) return Promise.reject(new ClosedError());
    if (this.#synced) return Promise.resolve();
    if (this.#lastError instanceof UnauthorizedError) return Promise.reject(this.#lastError);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        /** @param {Error} error */
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        const cause = this.#lastError ? ` (last error: ${this.#lastError.message})` : '';
        reject(new TimeoutError(`not synced within ${timeoutMs} ms${cause}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /**
   * The entry at `path` from the local cache; never a network call.
   * @param {string} path
   * @returns {{path: string, value: unknown, version: number, revision: number, format: string}}
   */
  get(path) {
    if (this.#closed) throw new ClosedError();
    const p = normalizePath(path);
    if (!this.#options.prefixes.some((prefix) => covers(prefix, p))) {
      throw invalid(`${p} is outside this client's prefixes ${JSON.stringify(this.#options.prefixes)}`);
    }
    const entry = this.#state.entries.get(p);
    if (entry) {
      return { path: p, value: entry.value, version: entry.version, revision: entry.revision, format: entry.format };
    }
    if (this.#state.hasState) throw new NotFoundError(p);
    if (this.#lastError instanceof UnauthorizedError) throw this.#lastError;
    throw new NotSyncedError();
  }

  /**
   * Calls `callback` for every change at or below `prefix` (not for the initial state). A callback
   * that throws or rejects is reported to the edge as a NACK for that path; the client goes on.
   * @param {string} prefix
   * @param {(event: import('./state').ChangeEvent) => unknown} callback
   */
  watch(prefix, callback) {
    if (this.#closed) throw new ClosedError();
    if (typeof callback !== 'function') throw invalid('watch needs a callback function');
    const p = normalizePath(prefix, 'a prefix');
    if (!this.#options.prefixes.some((own) => covers(own, p))) {
      throw invalid(`watch prefix ${p} is not under this client's prefixes ${JSON.stringify(this.#options.prefixes)}`);
    }
    const stop = this.#watches.add(p, callback);
    return { prefix: p, stop, close: stop };
  }

  /** True while not connected (serving a cache file, or the session is lost) or the edge lost the writer. */
  isStale() {
    return this.#closed || !this.#session?.started || this.#edgeStale;
  }

  /**
   * The effective value of `path` (or a subtree) with ${VAR} and ${secret:…} substituted, read
   * from the edge on demand — the way to read secrets, which are never pushed.
   * @param {string} path
   * @param {{env?: string|null, raw?: boolean, explain?: boolean, timeoutMs?: number}} [options]
   * @returns {Promise<{document: any, revision: number, stale: boolean}>}
   */
  resolve(path, options = {}) {
    if (this.#closed) return Promise.reject(new ClosedError());
    let p;
    try {
      p = normalizePath(path);
    } catch (error) {
      return Promise.reject(error);
    }
    const env = options.env === undefined ? this.#options.env : options.env;
    const request = create(wire.pb.ResolveRequestSchema, {
      path: p,
      env: env ?? undefined,
      raw: options.raw ?? false,
      explain: options.explain ?? false,
    });
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    return new Promise((resolve, reject) => {
      this.#grpc.makeUnaryRequest(
        wire.RESOLVE_METHOD,
        wire.encodeResolveRequest,
        wire.decodeResolveResponse,
        request,
        this.#metadata(),
        { deadline },
        (error, response) => {
          if (error || !response) {
            reject(fromStatus(error, `resolve ${p}`));
            return;
          }
          try {
            resolve({ document: JSON.parse(response.json), revision: Number(response.revision), stale: response.stale });
          } catch (cause) {
            reject(new SetpointError(`the edge answered resolve ${p} with text that is not JSON`, { cause }));
          }
        },
      );
    });
  }

  /** Ends the session, stops every timer, writes the cache file; no callback runs afterwards. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#watches.stopAll();
    for (const waiter of this.#waiters) waiter.reject(new ClosedError());
    this.#waiters.clear();
    const session = this.#session;
    if (session) {
      stopTimers(session);
      session.call.cancel();
    }
    this.#wake?.();
    this.#persist();
    this.#grpc.close();
    // The loop ends as soon as it sees the cancelled call — unless a callback is running, which
    // close() must not wait for: a callback may itself call close().
    await Promise.race([this.#loop, new Promise((resolve) => setImmediate(resolve))]);
  }

  // ---- background session ----

  async #run() {
    let attempt = 0;
    while (!this.#closed) {
      const outcome = await this.#runSession();
      if (this.#closed) break;
      let delay;
      if (outcome.unauthorized) {
        delay = UNAUTHORIZED_MS;
      } else {
        if (outcome.started) attempt = 0;
        delay = backoffDelay(attempt);
        attempt += 1;
      }
      await this.#sleep(delay);
    }
  }

  /** @returns {Promise<{started: boolean, unauthorized: boolean}>} */
  async #runSession() {
    const call = this.#grpc.makeBidiStreamRequest(
      wire.SESSION_METHOD,
      wire.encodeClientMessage,
      wire.decodeServerMessage,
      this.#metadata(),
      {},
    );
    /** @type {Session} */
    const session = {
      call,
      started: false,
      interval: DEFAULT_HEARTBEAT_MS,
      lastHeard: Date.now(),
      busy: false,
      resumedFrom: this.#state.revision,
      startedRevision: 0,
      awaitingResume: false,
      heartbeat: null,
      watchdog: null,
      settle: null,
      silence: null,
    };
    this.#session = session;
    session.watchdog = setInterval(() => this.#checkSilence(session), WATCHDOG_TICK_MS).unref();
    // Without a listener, grpc-js would turn a write after the call ended into an uncaught error;
    // the same failure reaches the read loop below, which is where it is handled.
    call.on('error', () => {});
    try {
      call.write(
        wire.helloMessage({
          instanceId: this.#options.instanceId,
          env: this.#options.env,
          prefixes: this.#options.prefixes,
          labels: this.#options.labels,
          sdkVersion: SDK_VERSION,
          fromRevision: this.#state.revision,
          resolve: this.#options.resolve,
        }),
      );
      for await (const message of call) {
        if (this.#closed) break;
        session.lastHeard = Date.now();
        session.busy = true;
        try {
          await this.#handle(session, message);
        } finally {
          session.busy = false;
          session.lastHeard = Date.now();
        }
      }
      if (!this.#closed) this.#fail(new SetpointError('the edge ended the session'));
      return { started: session.started, unauthorized: false };
    } catch (error) {
      if (this.#closed) return { started: session.started, unauthorized: false };
      const failure = session.silence ? new SetpointError(session.silence, { cause: error }) : fromStatus(error, 'session');
      this.#fail(failure);
      return { started: session.started, unauthorized: failure instanceof UnauthorizedError };
    } finally {
      stopTimers(session);
      call.cancel();
      if (this.#session === session) this.#session = null;
    }
  }

  /** @param {Session} session @param {import('./gen/edge_pb').ServerMessage} message */
  async #handle(session, message) {
    const kind = message.kind;
    switch (kind.case) {
      case 'started':
        this.#onStarted(session, kind.value);
        return;
      case 'heartbeat':
        this.#edgeStale = kind.value.stale;
        if (session.awaitingResume) this.#resumeSynced(session);
        return;
      case 'update':
        await this.#onUpdate(session, wire.plainUpdate(kind.value));
        return;
      default:
        return; // a newer edge's message kind: ignore it rather than drop the session
    }
  }

  /** @param {Session} session @param {import('./gen/edge_pb').SessionStarted} started */
  #onStarted(session, started) {
    session.started = true;
    session.interval = started.heartbeatIntervalMs || DEFAULT_HEARTBEAT_MS;
    session.startedRevision = Number(started.revision);
    this.#edgeStale = started.stale;
    this.#lastError = null;
    session.heartbeat = setInterval(() => {
      session.call.write(wire.heartbeatMessage(this.#state.revision ?? 0));
    }, session.interval).unref();
    if (session.resumedFrom !== null) {
      if (session.startedRevision <= session.resumedFrom) {
        this.#markSynced();
      } else {
        session.awaitingResume = true;
        this.#armSettle(session);
      }
    }
    const info = { edgeId: started.edgeId, revision: session.startedRevision };
    // Listeners run outside the session loop: one that throws is the app's error, not the session's.
    process.nextTick(() => this.emit('connected', info));
  }

  /** @param {Session} session @param {import('./state').WireUpdate} update */
  async #onUpdate(session, update) {
    const changes = this.#state.apply(update);
    this.#persist();
    if (update.reset || !session.awaitingResume || update.revision >= session.startedRevision) {
      this.#resumeSynced(session);
    } else {
      this.#armSettle(session);
    }
    const failures = await this.#watches.dispatch(changes, (failure, cause) => {
      this.#report(new SetpointError(`a watch callback failed for ${failure.path}: ${failure.error}`, { cause }));
    });
    if (!this.#closed) session.call.write(wire.receiptMessage(update.revision, failures));
  }


  /** @param {Session} session */
  #armSettle(session) {
    if (session.settle) clearTimeout(session.settle);
    session.settle = setTimeout(() => this.#resumeSynced(session), RESUME_SETTLE_MS).unref();
  }

  /** @param {Session} session */
  #resumeSynced(session) {
    session.awaitingResume = false;
    if (session.settle) clearTimeout(session.settle);
    session.settle = null;
    this.#markSynced();
  }

  #markSynced() {
    if (this.#synced || this.#closed) return;
    this.#synced = true;
    for (const waiter of this.#waiters) waiter.resolve();
    this.#waiters.clear();
    process.nextTick(() => this.emit('ready'));
  }

  /** @param {Session} session */
  #checkSilence(session) {
    if (session.busy) return;
    const limit = session.started ? 3 * session.interval : CONNECT_TIMEOUT_MS;
    const silent = Date.now() - session.lastHeard;
    if (silent > limit) {
      session.silence = session.started
        ? `the edge was silent for ${silent} ms (three heartbeat intervals): reconnecting`
        : `no SessionStarted within ${limit} ms: reconnecting`;
      session.call.cancel();
    }
  }

  /** @param {Error} error */
  #fail(error) {
    this.#lastError = error;
    if (error instanceof UnauthorizedError && !this.#synced) {
      for (const waiter of this.#waiters) waiter.reject(error);
      this.#waiters.clear();
    }
    this.#report(error);
  }

  /**
   * Reports a problem the client survives on the 'error' event — only when someone listens,
   * because EventEmitter throws an unhandled 'error' and a config client must not crash its app.
   * @param {Error} error
   */
  #report(error) {
    process.nextTick(() => {
      if (this.listenerCount('error') > 0) this.emit('error', error);
    });
  }

  #persist() {
    const file = this.#options.cachePath;
    if (!file || !this.#state.hasState) return;
    try {
      writeAtomic(file, this.#state.toFile());
    } catch (cause) {
      this.#report(new SetpointError(`cannot write the cache file ${file}`, { cause }));
    }
  }

  #loadCache() {
    const file = this.#options.cachePath;
    if (!file) return;
    try {
      const content = readCache(file);
      if (content === undefined) return;
      const refused = this.#state.loadFile(content);
      if (refused) this.#report(new SetpointError(`ignoring the cache file ${file}: ${refused}`));
    } catch (cause) {
      this.#report(new SetpointError(`cannot read the cache file ${file}`, { cause }));
    }
  }

  #metadata() {
    const metadata = new grpc.Metadata();
    if (this.#options.token) metadata.set('authorization', `Bearer ${this.#options.token}`);
    return metadata;
  }

  /** @param {number} ms */
  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms).unref();
      const self = this;
      function done() {
        clearTimeout(timer);
        self.#wake = null;
        resolve(undefined);
      }
      this.#wake = done;
    });
  }
}

/** @param {Session} session */
function stopTimers(session) {
  if (session.heartbeat) clearInterval(session.heartbeat);
  if (session.watchdog) clearInterval(session.watchdog);
  if (session.settle) clearTimeout(session.settle);
  session.heartbeat = session.watchdog = session.settle = null;
}

module.exports = { Client };
