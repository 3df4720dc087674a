// `npm run demo`: the whole story on a local throwaway cluster. The seed's myapp goes out as v1,
// a healthy v2 is released and promoted, a bad v3 (30 % 5xx) is rolled back — with the live
// `weir get` view on screen — then a summary, and the cluster is stopped (also on Ctrl-C).
// WEIR_DEMO_REUSE=1 runs it on an already running cluster and leaves that running (tests do).
// `npm run demo -- --gateway-api` tells the same story with a Gateway API HTTPRoute (issue 15).
import { annotations, namespaceOptIn, policyAnnotations } from '../contract/names.ts';
import { down, kubectl as clusterKubectl, readState, up } from '../test/cluster/cluster.ts';
import type { ClusterState } from '../test/cluster/cluster.ts';
import { seedDeployment, seedGatewayMesh, seedGatewayRouting, seedMesh, seedRouting } from './seed.ts';
import { renderDetail } from '../cli/view.ts';
import { clients, summaryOf } from '../cli/main.ts';
import type { Clients } from '../cli/main.ts';

const reuse = process.env.WEIR_DEMO_REUSE === '1';
// WEIR_DEMO_KEEP=1 leaves the cluster running afterwards, to look around.
const keep = process.env.WEIR_DEMO_KEEP === '1';
const ns = process.env.WEIR_DEMO_NAMESPACE ?? 'demo';
const live = process.stdout.isTTY && process.env.WEIR_DEMO_PLAIN !== '1';
// Seconds, not minutes, so the tour fits in a coffee: the same annotations a user would set.
const timings = {
  [policyAnnotations.stepPause]: '5s',
  [policyAnnotations.interval]: '2s',
  [policyAnnotations.minRequests]: '5',
  [policyAnnotations.drain]: '2s',
};

const gatewayApi = process.argv.includes('--gateway-api');
const mesh = (): Record<string, unknown>[] => (gatewayApi ? seedGatewayMesh() : seedMesh(ns));
const release = (version: string, podAnnotations: Record<string, string> = {}): string =>
  JSON.stringify(seedDeployment(version, timings, podAnnotations, gatewayApi ? seedGatewayRouting : seedRouting));

const say = (line: string): void => void process.stdout.write(`${line}\n`);

const kubectl = (state: ClusterState, args: string[], input?: string): Promise<string> =>
  clusterKubectl(`${state.binDir}/kubectl`, state.kubeconfig, args, input);

/** Shows the release live until it reaches `phase`; returns the last frame. */
async function watchUntil(c: Clients, phase: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const d = await c.apps.readNamespacedDeployment({ namespace: ns, name: 'myapp' });
    const frame = renderDetail(await summaryOf(c, d));
    if (live) process.stdout.write(`\x1b[2J\x1b[H${frame}\n`);
    // Without a terminal, print a frame only when phase, step or weight moved.
    else if (frame.split('\n').slice(2, 5).join() !== last.split('\n').slice(2, 5).join()) say(`---\n${frame}`);
    last = frame;
    if (d.metadata?.annotations?.[annotations.phase] === phase) return frame;
    if (Date.now() > deadline) throw new Error(`myapp did not reach ${phase} in ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function images(state: ClusterState): Promise<string[]> {
  const pods = JSON.parse(await kubectl(state, ['get', 'pods', '-n', ns, '-l', 'app=myapp', '-o', 'json'])) as {
    items: { metadata: { deletionTimestamp?: string }; spec: { containers: { image: string }[] } }[];
  };
  return [
    ...new Set(pods.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.spec.containers[0]?.image ?? '')),
  ];
}

async function tour(state: ClusterState): Promise<void> {
  const c = clients({ kubeconfig: state.kubeconfig, namespace: ns });
  const routing = gatewayApi ? 'a Gateway API HTTPRoute' : "the seed's Istio VirtualService";
  say(`\n== 1. The seed's myapp, as a plain Deployment, in namespace ${ns} (labelled weir.dev/canary=enabled)`);
  say(`   routed by ${routing}`);
  await kubectl(state, ['create', 'namespace', ns]).catch(() => '');
  await kubectl(state, ['label', 'namespace', ns, `${namespaceOptIn.key}=${namespaceOptIn.value}`, '--overwrite']);
  for (const m of mesh()) await kubectl(state, ['apply', '-n', ns, '-f', '-'], JSON.stringify(m));
  await kubectl(state, ['apply', '-n', ns, '-f', '-'], release('v1'));
  await kubectl(state, ['rollout', 'status', 'deployment/myapp', '-n', ns, '--timeout=120s']);
  say(`v1 is running: ${(await images(state)).join(', ')}`);

  say('\n== 2. kubectl apply of a healthy v2: weir holds v1 as stable and steps v2 through 10 → 50 → 100 %');
  await kubectl(state, ['apply', '-n', ns, '-f', '-'], release('v2'));
  const promoted = await watchUntil(c, 'Stable', 180_000);
  if (live) say(promoted);
  say(`v2 promoted; now running: ${(await images(state)).join(', ')}`);

  say('\n== 3. kubectl apply of a bad v3 (30 % of its answers are 5xx): weir rolls it back');
  await kubectl(state, ['apply', '-n', ns, '-f', '-'], release('v3', { 'sim.weir.dev/error-rate': '0.3' }));
  const rolledBack = await watchUntil(c, 'RolledBack', 180_000);
  if (live) say(rolledBack);
  say(`v3 rolled back; still running: ${(await images(state)).join(', ')}`);

  say('\n== Summary');
  const events = await kubectl(state, [
    'get',
    'events',
    '-n',
    ns,
    '--field-selector',
    'involvedObject.name=myapp',
    '--sort-by=.metadata.creationTimestamp',
    '-o',
    'custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message',
  ]);
  say(
    events
      .split('\n')
      .filter((l) => /Promoted|RolledBack|RollingBack|ReleaseStarted|TYPE/.test(l))
      .map((l) => (l.length > 160 ? `${l.slice(0, 157)}...` : l))
      .join('\n'),
  );
  const env = state.kubeconfig.replace(/kubeconfig$/, 'env');
  const stops = keep || reuse ? '' : ' (run again with WEIR_DEMO_KEEP=1 to keep this cluster; it stops now)';
  say(`\nWhere to look next${stops}:
  source ${env}; kubectl describe deployment myapp -n ${ns}   # events and weir.dev/* annotations
  source ${env}; npm run weir -- get myapp -n ${ns}          # the release view
  source ${env}; npm run weir -- dashboard -A               # the same, live in a browser: http://127.0.0.1:3100
  docs/design.md                                    # labels, annotations, phases, events, metrics
  charts/weir/README.md                             # install on a real cluster; migrating from Argo Rollouts`);
}

async function main(): Promise<void> {
  const running = reuse ? await readState() : undefined;
  const state = running ?? (await up({ log: (l) => say(`[cluster] ${l}`) }));
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping || running || keep) return;
    stopping = true;
    say('\n[cluster] stopping the local cluster');
    await down();
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().then(() => process.exit(143)));
  try {
    await tour(state);
  } finally {
    await stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
