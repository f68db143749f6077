'use strict';
// Runs examples/demo.js as a user would, against a real `setpoint dev`: it must print the value,
// print a change made through the REST API, and exit cleanly on SIGTERM.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');

const { DevServer, waitUntil } = require('./harness');

test('examples/demo.js prints the value and a change, and closes on SIGTERM', async (t) => {
  const server = await DevServer.start();
  t.after(() => server.destroy());
  await server.put('/myapp/database/host', 'localhost');
  const demo = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'demo.js')], {
    env: { ...process.env, SETPOINT_ADDRESS: server.address },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  demo.stdout.on('data', (chunk) => { out += chunk; });
  demo.stderr.on('data', (chunk) => { err += chunk; });
  const exited = new Promise((resolve) => demo.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => { if (demo.exitCode === null) demo.kill('SIGKILL'); });

  await waitUntil(() => out.includes('/myapp/database/host = "localhost" (version 1)'), `the demo's first value (stdout: ${out}, stderr: ${err})`);
  // The watch is registered right after that line; a change written after it must show.
  await server.put('/myapp/database/host', 'new-host.internal');
  await waitUntil(() => out.includes('changed /myapp/database/host: "localhost" -> "new-host.internal" (version 2'),
    `the demo to print the change (stdout: ${out})`);
  demo.kill('SIGTERM');
  assert.deepEqual(await exited, { code: 0, signal: null });
  assert.match(out, /closed\n$/);
});
