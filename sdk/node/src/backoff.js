'use strict';
// Reconnect delays: full-jitter exponential backoff (100 ms doubling to 10 s), and a flat 30 s
// after the edge refused the token, so a bad key never turns into a retry storm. The random
// source is injected so tests check the bounds without luck.

const BASE_MS = 100;
const CAP_MS = 10_000;
const UNAUTHORIZED_MS = 30_000;

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry): uniform in
 * [0, min(cap, base·2^attempt)).
 * @param {number} attempt
 * @param {() => number} [random] uniform in [0, 1)
 */
function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

module.exports = { backoffDelay, BASE_MS, CAP_MS, UNAUTHORIZED_MS };
