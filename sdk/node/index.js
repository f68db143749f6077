'use strict';
// @setpoint/sdk: the public surface. Everything else under src/ is internal.

const { Client } = require('./src/client');
const errors = require('./src/errors');

module.exports = {
  Client,
  SetpointError: errors.SetpointError,
  NotFoundError: errors.NotFoundError,
  NotSyncedError: errors.NotSyncedError,
  UnauthorizedError: errors.UnauthorizedError,
  TimeoutError: errors.TimeoutError,
  ClosedError: errors.ClosedError,
};
