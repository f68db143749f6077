#!/usr/bin/env node
'use strict';
// A small app using @setpoint/sdk: connects to an edge (or `setpoint dev`), prints a value,
// prints every change below /myapp, and closes cleanly on Ctrl-C / SIGTERM.
//
//   setpoint dev --listen 127.0.0.1:8000 &
//   node examples/demo.js            # SETPOINT_ADDRESS, SETPOINT_ENV, SETPOINT_TOKEN, SETPOINT_CACHE
//   curl -X PUT http://127.0.0.1:8000/api/config/myapp/database/host -d '{"value": "new-host"}'

const { Client, NotFoundError } = require('@setpoint/sdk');

async function main() {
  const client = new Client(process.env.SETPOINT_ADDRESS ?? '127.0.0.1:8000', {
    environment: process.env.SETPOINT_ENV || null,
    prefixes: ['/myapp'],
    token: process.env.SETPOINT_TOKEN || null,
    cachePath: process.env.SETPOINT_CACHE || null,
    labels: { app: 'demo' },
  });
  client.on('error', (error) => console.error(`setpoint: ${error.message}`));

  await client.waitReady(10_000);
  console.log(`ready (stale: ${client.isStale()})`);
  try {
    const { value, version } = client.get('/myapp/database/host');
    console.log(`/myapp/database/host = ${JSON.stringify(value)} (version ${version})`);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    console.log('/myapp/database/host is not set yet');
  }

  client.watch('/myapp', async (event) => {
    if (event.deleted) {
      console.log(`deleted ${event.path} (was ${JSON.stringify(event.oldValue)})`);
    } else {
      console.log(`changed ${event.path}: ${JSON.stringify(event.oldValue)} -> ${JSON.stringify(event.value)} (version ${event.version}, revision ${event.revision})`);
    }
  });

  const stop = async () => {
    await client.close();
    console.log('closed');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
