'use strict';
// Maps a failed gRPC call to the SDK's errors, so the session and resolve() report the edge's
// refusals the same way.

const grpc = require('@grpc/grpc-js');

const { SetpointError, UnauthorizedError } = require('./errors');

/**
 * Maps a gRPC failure to the SDK's errors.
 * @param {unknown} error @param {string} what
 * @returns {Error}
 */
function fromStatus(error, what) {
  const status = /** @type {Partial<grpc.ServiceError>} */ (error ?? {});
  const details = status.details || status.message || String(error);
  switch (status.code) {
    case grpc.status.UNAUTHENTICATED:
    case grpc.status.PERMISSION_DENIED:
      return new UnauthorizedError(`the edge refused the token (${what}): ${details}`, error);
    case grpc.status.NOT_FOUND:
      return new SetpointError(`${what}: ${details}`, { code: 'not_found', cause: error });
    case grpc.status.DEADLINE_EXCEEDED:
      return new SetpointError(`${what}: ${details}`, { code: 'timeout', cause: error });
    case grpc.status.INVALID_ARGUMENT:
      return new SetpointError(`${what}: ${details}`, { code: 'invalid', cause: error });
    default:
      return new SetpointError(`${what}: ${details}`, { cause: error });
  }
}

module.exports = { fromStatus };
