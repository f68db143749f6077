// Types of @setpoint/sdk. Kept by hand beside the JavaScript; `npm run typecheck` (run by
// test.sh) compiles test/types-check.ts against this file and checks the sources' JSDoc types.

import { EventEmitter } from 'node:events';

/** The kinds of error, as `SetpointError.code` names them. */
export type ErrorCode =
  | 'not_found'
  | 'not_synced'
  | 'unauthorized'
  | 'timeout'
  | 'closed'
  | 'invalid'
  | 'other';

export class SetpointError extends Error {
  constructor(message: string, options?: { code?: ErrorCode; cause?: unknown });
  readonly code: ErrorCode;
}
/** Synced (or serving a cache file) and the path holds no value. */
export class NotFoundError extends SetpointError {
  readonly code: 'not_found';
  readonly path: string;
}
/** No first sync yet and no cache file to serve. */
export class NotSyncedError extends SetpointError {
  readonly code: 'not_synced';
}
/** The edge refused the token (gRPC UNAUTHENTICATED or PERMISSION_DENIED). */
export class UnauthorizedError extends SetpointError {
  readonly code: 'unauthorized';
}
export class TimeoutError extends SetpointError {
  readonly code: 'timeout';
}
export class ClosedError extends SetpointError {
  readonly code: 'closed';
}

/** A decoded configuration value: the JSON value for format json, a string for text and yaml. */
export type Value = null | boolean | number | string | readonly Value[] | { readonly [key: string]: Value };

export interface TlsOptions {
  /** PEM of the CA that signed the edge's certificate (default: the system roots). */
  ca?: string | Buffer;
  /** PEM client certificate, for mutual TLS. */
  cert?: string | Buffer;
  /** PEM private key of `cert`. */
  key?: string | Buffer;
  /** The name the edge's certificate must carry, when it differs from the address's host. */
  serverName?: string;
}

export interface ClientOptions {
  /** The environment whose effective values the client holds; absent: base values. */
  environment?: string | null;
  /** Watched prefixes, default ["/"]; a token limited to /myapp needs ["/myapp"]. */
  prefixes?: string[];
  /** Where to keep the cache file; absent: no cache file. */
  cachePath?: string | null;
  /** This application instance, stable across restarts (e.g. the pod name). Default hostname-pid-random. */
  instanceId?: string;
  /** Free-form labels reported to the edge, e.g. { zone: 'eu-1' }. */
  labels?: Record<string, string>;
  /** An API key, sent as `authorization: Bearer <token>`. */
  token?: string | null;
  /** true: TLS with the system roots; an object: TLS with these certificates. Default: plaintext h2c. */
  tls?: boolean | TlsOptions;
  /** Substitute ${VAR} in pushed values (secrets are never pushed; use resolve()). */
  resolve?: boolean;
}

/** One path's value as the local cache holds it. */
export interface Entry {
  path: string;
  /** Deeply frozen: shared with the cache and every callback. */
  value: Value;
  version: number;
  /** The revision that last changed this path. */
  revision: number;
  /** json, yaml or text. */
  format: string;
}

/** A change, as a watch callback receives it. */
export interface ChangeEvent {
  readonly path: string;
  /** The new value; undefined when deleted. */
  readonly value: Value | undefined;
  /** The value before; undefined when the path had none. */
  readonly oldValue: Value | undefined;
  readonly version: number;
  readonly revision: number;
  readonly deleted: boolean;
  readonly format: string;
}

export interface WatchHandle {
  readonly prefix: string;
  /** No further calls of this callback (one already running finishes). */
  stop(): void;
  /** The same as stop(). */
  close(): void;
}

export interface ResolveOptions {
  /** Default: the client's environment. */
  env?: string | null;
  /** The effective value without substituting references. */
  raw?: boolean;
  /** Add provenance: which path and version every key came from. */
  explain?: boolean;
  timeoutMs?: number;
}

export interface ResolveResult {
  /** The JSON document the HTTP API answers for GET /api/config/{path}?env=…&resolve=true. */
  document: any;
  revision: number;
  stale: boolean;
}

export interface ClientEvents {
  /** A problem the client survives: a lost session, a refused token, a failed callback, a cache file it cannot write. */
  error: [error: Error];
  /** The first sync completed. */
  ready: [];
  /** A session started (after every reconnect too). */
  connected: [info: { edgeId: string; revision: number }];
}

export class Client extends EventEmitter<ClientEvents> {
  /** Starts connecting in the background; get() and watch() are usable at once. */
  constructor(address: string, options?: ClientOptions);
  readonly instanceId: string;
  /** The prefixes in effect, normalized. */
  readonly prefixes: string[];
  /** Resolves after the first sync; rejects with UnauthorizedError, TimeoutError or ClosedError. */
  waitReady(timeoutMs?: number): Promise<void>;
  /**
   * The cached entry at `path`; never a network call. Throws NotFoundError, NotSyncedError,
   * UnauthorizedError (refused and nothing cached), ClosedError, or SetpointError code 'invalid'
   * for a path outside the client's prefixes.
   */
  get(path: string): Entry;
  /** Calls `callback` for each change at or below `prefix`, one at a time, in revision order. */
  watch(prefix: string, callback: (event: ChangeEvent) => unknown): WatchHandle;
  /** True while not connected (serving the cache file or reconnecting) or the edge lost its writer. */
  isStale(): boolean;
  /** Reads a resolved value (secrets included) from the edge on demand. */
  resolve(path: string, options?: ResolveOptions): Promise<ResolveResult>;
  /** Ends the session, stops every timer and writes the cache file. */
  close(): Promise<void>;
}
