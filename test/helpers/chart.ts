// Helm and the chart's ServiceAccount, for tests that render, install or act as the chart.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { repoRoot } from '../cluster/cluster.ts';
import { cluster, kubectl } from './kube.ts';

export const chart = join(repoRoot, 'charts/weir');

export async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const state = await cluster();
  const versions = await readFile(join(repoRoot, 'test/cluster/versions.env'), 'utf8');
  const bin = join(state.binDir, '..', `helm-${versions.match(/HELM_VERSION=(\S+)/)?.[1] ?? ''}`, 'helm');
  return new Promise((resolve) => {
    execFile(
      bin,
      [...args],
      {
        env: {
          ...process.env,
          KUBECONFIG: state.kubeconfig,
          HELM_CACHE_HOME: join(tmpdir(), 'weir-helm-cache'),
          HELM_CONFIG_HOME: join(tmpdir(), 'weir-helm-config'),
        },
        maxBuffer: 32 * 1024 * 1024,
      },
      (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
    );
  });
}

/**
 * Values that keep a test install from guarding anyone else's namespaces (--set-string: an
 * all-digit id stays a string).
 */
export const isolated = (id: string): string[] => [
  '--set-string',
  `webhook.namespaceSelector.matchLabels.weir-chart-test=${id}`,
  '--set',
  'prometheus.url=http://127.0.0.1:9',
];

/** A kubeconfig that authenticates as a ServiceAccount with a fresh token, removed at teardown. */
export async function serviceAccountKubeconfig(
  t: { teardown(fn: () => unknown): void },
  namespace: string,
  serviceAccount: string,
): Promise<{ token: string; kubeconfig: string; caData: string }> {
  const token = (await kubectl(['create', 'token', serviceAccount, '-n', namespace, '--duration=1h'])).trim();
  const state = await cluster();
  const dir = await mkdtemp(join(tmpdir(), 'weir-sa-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const admin = await readFile(state.kubeconfig, 'utf8');
  const caData = admin.match(/certificate-authority-data: (\S+)/)?.[1] ?? '';
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: state.apiServer, 'certificate-authority-data': caData } }],
      users: [{ name: 'sa', user: { token } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
      'current-context': 'c',
    }),
  );
  return { token, kubeconfig, caData };
}
