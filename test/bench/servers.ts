// The two servers the webhook benchmark compares, each run in its own process:
// `weir` is buildApp as shipped; `baseline` is a bare fastify HTTPS route with a fixed answer.
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import { buildApp } from '../../webhook/app.ts';

function baseline(certFile: string, keyFile: string): FastifyInstance {
  const app = Fastify({
    https: { cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' },
    bodyLimit: 7 * 1024 * 1024,
    logger: false,
  });
  const fixed = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid: 'fixed', allowed: true },
  };
  app.post('/mutate', async () => fixed);
  return app;
}

const [kind, certFile, keyFile] = process.argv.slice(2);
if (!kind || !certFile || !keyFile) throw new Error('usage: servers.ts weir|baseline CERT KEY');
const app = kind === 'weir' ? buildApp({ tls: { certFile, keyFile }, logger: false }) : baseline(certFile, keyFile);
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
