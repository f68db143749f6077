#!/usr/bin/env node
'use strict';
// The conformance driver: speaks tests/conformance/README.md's line protocol on stdin/stdout and
// drives one Client. Stdout carries protocol lines only; diagnostics go to stderr. Commands are
// handled one at a time, in order, each answered by exactly one line with its seq.

const readline = require('node:readline');
const { Client, SetpointError } = require('..');

/** @type {Client|null} */
let client = null;
/** @type {Map<string, {stop(): void}>} */
const watches = new Map();

/** @param {unknown} line */
function send(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

/** Values absent in JS (undefined) are null on the wire of this protocol. @param {unknown} v */
const orNull = (v) => (v === undefined ? null : v);

/** @param {unknown} error */
function errorKind(error) {
  if (error instanceof SetpointError) return error.code;
  return 'other';
}

/** @param {Record<string, any>} command @returns {Promise<Record<string, unknown>>} */
async function run(command) {
  switch (command.cmd) {
    case 'open': {
      if (client) throw new SetpointError('a client is already open', { code: 'invalid' });
      client = new Client(command.address, {
        environment: command.env ?? null,
        prefixes: command.prefixes ?? undefined,
        cachePath: command.cache_path ?? null,
        instanceId: command.instance_id ?? undefined,
        token: command.token ?? null,
        labels: command.labels ?? {},
      });
      client.on('error', (error) => process.stderr.write(`client error: ${error.message}\n`));
      return {};
    }
    case 'wait_ready':
      await need().waitReady(command.timeout_ms ?? 5000);
      return {};
    case 'get': {
      const entry = need().get(command.path);
      return { value: entry.value, version: entry.version };
    }
    case 'watch': {
      const id = String(command.watch_id);
      const failPaths = new Set(command.fail_paths ?? []);
      const handle = need().watch(command.prefix, (event) => {
        send({
          event: 'change',
          watch_id: id,
          path: event.path,
          value: orNull(event.value),
          old_value: orNull(event.oldValue),
          version: event.version,
          revision: event.revision,
          deleted: event.deleted,
          at_ms: performance.timeOrigin + performance.now(),
        });
        if (failPaths.has(event.path)) throw new Error(`injected failure at ${event.path}`);
      });
      watches.get(id)?.stop();
      watches.set(id, handle);
      return {};
    }
    case 'unwatch': {
      const id = String(command.watch_id);
      const handle = watches.get(id);
      if (!handle) throw new SetpointError(`no watch ${id}`, { code: 'invalid' });
      handle.stop();
      watches.delete(id);
      return {};
    }
    case 'is_stale':
      return { stale: need().isStale() };
    case 'close':
      await need().close();
      return {};
    default:
      throw new SetpointError(`unknown command ${JSON.stringify(command.cmd)}`, { code: 'invalid' });
  }
}

function need() {
  if (!client) throw new SetpointError('no client: send "open" first', { code: 'invalid' });
  return client;
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let command;
    try {
      command = JSON.parse(line);
    } catch {
      process.stderr.write(`not a JSON line: ${line}\n`);
      continue;
    }
    try {
      const answer = await run(command);
      send({ seq: command.seq, ok: true, ...answer });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      send({ seq: command.seq, ok: false, error: { kind: errorKind(error), message } });
    }
  }
  if (client) await client.close();
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`driver failed: ${error && error.stack}\n`);
  process.exit(1);
});
