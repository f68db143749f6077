'use strict';
// The client's options: what the caller may pass (ClientOptions), validated once at construction
// into what the client uses (ValidOptions), and the grpc-js credentials and channel settings
// they imply. Nothing here connects.

const os = require('node:os');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');

const { invalid } = require('./errors');
const { normalizePrefixes } = require('./paths');

/** Resets carry a whole subtree; grpc-js's 4 MiB default would cut large ones off. */
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/**
 * @typedef {object} TlsOptions
 * @property {string|Buffer} [ca] PEM of the CA that signed the edge's certificate
 * @property {string|Buffer} [cert] PEM client certificate (mutual TLS)
 * @property {string|Buffer} [key] PEM private key of `cert`
 * @property {string} [serverName] the name to verify the edge's certificate against
 *
 * @typedef {object} ClientOptions
 * @property {string|null} [environment]
 * @property {string[]} [prefixes]
 * @property {string|null} [cachePath]
 * @property {string} [instanceId]
 * @property {Record<string, string>} [labels]
 * @property {string|null} [token]
 * @property {boolean|TlsOptions} [tls]
 * @property {boolean} [resolve]
 *
 * @typedef {object} ValidOptions
 * @property {string} target
 * @property {string|null} env
 * @property {string[]} prefixes
 * @property {string|null} cachePath
 * @property {string} instanceId
 * @property {Record<string, string>} labels
 * @property {string|null} token
 * @property {boolean|TlsOptions} tls
 * @property {boolean} resolve
 *
 */

/** @param {boolean|TlsOptions} tls */
function credentials(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  /** @param {string|Buffer|undefined} pem */
  const bytes = (pem) => (pem === undefined ? null : Buffer.isBuffer(pem) ? pem : Buffer.from(pem));
  return grpc.credentials.createSsl(bytes(tls.ca), bytes(tls.key), bytes(tls.cert));
}

/** @param {boolean|TlsOptions} tls */
function channelOptions(tls) {
  /** @type {grpc.ChannelOptions} */
  const options = {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  };
  if (typeof tls === 'object' && tls.serverName) {
    options['grpc.ssl_target_name_override'] = tls.serverName;
    options['grpc.default_authority'] = tls.serverName;
  }
  return options;
}

/**
 * Validates what the caller passed, once, at the boundary.
 * @param {unknown} address @param {ClientOptions} options
 * @returns {ValidOptions}
 */
function parseOptions(address, options) {
  if (typeof address !== 'string' || address.trim() === '') {
    throw invalid('the address must be "host:port"');
  }
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
  let target = address.trim();
  let tls = options.tls ?? false;
  // A URL is accepted for convenience; https implies TLS unless the caller said otherwise.
  if (target.startsWith('https://')) {
    target = target.slice('https://'.length);
    if (options.tls === undefined) tls = true;
  } else if (target.startsWith('http://')) {
    target = target.slice('http://'.length);
  }
  target = target.replace(/\/+$/, '');
  const env = options.environment ?? null;
  if (env !== null && typeof env !== 'string') throw invalid('environment must be a string');
  const prefixes = options.prefixes ?? ['/'];
  if (!Array.isArray(prefixes) || prefixes.length === 0) {
    throw invalid('prefixes must be a non-empty array ("/" for everything)');
  }
  const labels = options.labels ?? {};
  if (typeof labels !== 'object' || labels === null || Object.values(labels).some((v) => typeof v !== 'string')) {
    throw invalid('labels must map names to strings');
  }
  const cachePath = options.cachePath ?? null;
  if (cachePath !== null && (typeof cachePath !== 'string' || cachePath === '')) {
    throw invalid('cachePath must be a file path');
  }
  const token = options.token ?? null;
  if (token !== null && typeof token !== 'string') throw invalid('token must be a string');
  const instanceId =
    options.instanceId ?? `${os.hostname()}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  if (typeof instanceId !== 'string' || instanceId === '') throw invalid('instanceId must be a non-empty string');
  return {
    target,
    env: env === '' ? null : env,
    prefixes: normalizePrefixes(prefixes),
    cachePath,
    instanceId,
    labels: { ...labels },
    token: token === '' ? null : token,
    tls,
    resolve: options.resolve ?? false,
  };
}

module.exports = { parseOptions, credentials, channelOptions };
