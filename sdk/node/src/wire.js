'use strict';
// The edge's gRPC wire as the rest of the SDK sees it: method paths, (de)serializers for
// grpc-js, and the translation between protobuf messages and the plain shapes of state.js
// (int64 revisions arrive as bigint; they become numbers here — revisions stay far below 2^53).

const { create, toBinary, fromBinary } = require('@bufbuild/protobuf');
const pb = require('./gen/edge_pb');

const SESSION_METHOD = '/setpoint.edge.v1.Edge/Session';
const RESOLVE_METHOD = '/setpoint.edge.v1.Edge/Resolve';

/** @param {import('./gen/edge_pb').ClientMessage} message */
function encodeClientMessage(message) {
  return Buffer.from(toBinary(pb.ClientMessageSchema, message));
}

/** @param {Buffer} bytes */
function decodeServerMessage(bytes) {
  return fromBinary(pb.ServerMessageSchema, bytes);
}

/** @param {import('./gen/edge_pb').ResolveRequest} message */
function encodeResolveRequest(message) {
  return Buffer.from(toBinary(pb.ResolveRequestSchema, message));
}

/** @param {Buffer} bytes */
function decodeResolveResponse(bytes) {
  return fromBinary(pb.ResolveResponseSchema, bytes);
}

/**
 * @param {{instanceId: string, env: string|null, prefixes: string[], labels: Record<string, string>,
 *   sdkVersion: string, fromRevision: number|null, resolve: boolean}} hello
 */
function helloMessage(hello) {
  return create(pb.ClientMessageSchema, {
    kind: {
      case: 'hello',
      value: create(pb.ClientHelloSchema, {
        instanceId: hello.instanceId,
        env: hello.env ?? undefined,
        prefixes: hello.prefixes,
        labels: hello.labels,
        sdk: 'node',
        sdkVersion: hello.sdkVersion,
        fromRevision: hello.fromRevision === null ? undefined : BigInt(hello.fromRevision),
        resolve: hello.resolve,
      }),
    },
  });
}

/** @param {number} revision @param {{path: string, error: string}[]} failures */
function receiptMessage(revision, failures) {
  return create(pb.ClientMessageSchema, {
    kind: {
      case: 'receipt',
      value: create(pb.ReceiptSchema, {
        revision: BigInt(revision),
        failures: failures.map((f) => create(pb.NackSchema, f)),
      }),
    },
  });
}

/** @param {number} revision */
function heartbeatMessage(revision) {
  return create(pb.ClientMessageSchema, {
    kind: { case: 'heartbeat', value: create(pb.HeartbeatSchema, { revision: BigInt(revision) }) },
  });
}

/**
 * @param {import('./gen/edge_pb').WatchResponse} update
 * @returns {import('./state').WireUpdate}
 */
function plainUpdate(update) {
  return {
    revision: Number(update.revision),
    reset: update.reset,
    events: update.events.map((e) => ({
      deleted: e.type === pb.Event_Type.DELETE,
      path: e.path,
      oldValue: e.oldValue,
      newValue: e.newValue,
      version: Number(e.version),
      revision: Number(e.revision),
      format: e.format,
    })),
    state: update.state.map((e) => ({
      path: e.path,
      value: e.value,
      format: e.format,
      version: Number(e.version),
      revision: Number(e.revision),
    })),
  };
}

module.exports = {
  SESSION_METHOD,
  RESOLVE_METHOD,
  encodeClientMessage,
  decodeServerMessage,
  encodeResolveRequest,
  decodeResolveResponse,
  helloMessage,
  receiptMessage,
  heartbeatMessage,
  plainUpdate,
  pb,
};
