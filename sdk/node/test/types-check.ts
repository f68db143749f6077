// Compiled (not run) by `npm run typecheck`: the public types in index.d.ts describe the API the
// way the README uses it. A type error here fails test.sh.
import { Client, NotFoundError, SetpointError, UnauthorizedError, type ChangeEvent, type Entry } from '@setpoint/sdk';

async function usage(): Promise<void> {
  const client = new Client('127.0.0.1:8000', {
    environment: 'prod',
    prefixes: ['/myapp'],
    cachePath: '/tmp/setpoint-cache.json',
    instanceId: 'pod-1',
    labels: { zone: 'eu-1' },
    token: 'spk_x',
    tls: { ca: 'PEM', serverName: 'edge.internal' },
  });
  client.on('error', (error: Error) => console.error(error.message));
  client.on('connected', ({ edgeId, revision }) => console.log(edgeId, revision + 1));
  await client.waitReady(5000);
  const entry: Entry = client.get('/myapp/db/host');
  const version: number = entry.version;
  const handle = client.watch('/myapp', async (event: ChangeEvent) => {
    if (!event.deleted) console.log(event.path, event.value, event.oldValue, event.revision);
  });
  handle.stop();
  const stale: boolean = client.isStale();
  const { document, revision } = await client.resolve('/myapp/db', { explain: true });
  try {
    client.get('/myapp/none');
  } catch (error) {
    if (error instanceof NotFoundError) console.log(error.path, error.code);
    if (error instanceof UnauthorizedError) console.log(error.code === 'unauthorized');
    if (error instanceof SetpointError) console.log(error.code);
  }
  console.log(version, stale, document, revision);
  await client.close();
}

void usage;
