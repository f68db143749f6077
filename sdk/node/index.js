'use strict';
// @setpoint/sdk: the public surface. Everything else under src/ is internal. Each export is a
// plain `exports.X =` assignment so that ESM `import { X } from '@setpoint/sdk'` finds it too
// (Node detects CommonJS named exports only in forms it can read statically).

const { Client } = require('./src/client');
const errors = require('./src/errors');

exports.Client = Client;
exports.SetpointError = errors.SetpointError;
exports.NotFoundError = errors.NotFoundError;
exports.NotSyncedError = errors.NotSyncedError;
exports.UnauthorizedError = errors.UnauthorizedError;
exports.TimeoutError = errors.TimeoutError;
exports.ClosedError = errors.ClosedError;
