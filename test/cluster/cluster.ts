// The local throwaway cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// KWOK fake nodes, istiod, Prometheus and the mesh simulator, all on 127.0.0.1 and free ports.
// Its state lives in `.cluster/`; `env` there is shell-sourceable, `state.json` lists PIDs.
import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdir, readFile, rm, writeFile, readdir, access } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { parse as parseYaml } from 'yaml';
import { createAuthority, issue } from '../../certs/pki.ts';
import { writeWebhookCerts } from '../../certs/main.ts';
import { webhookConfiguration } from '../../webhook/registration.ts';

const run = promisify(execFile);
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const clusterDir = process.env.WEIR_CLUSTER_DIR ?? join(repoRoot, '.cluster');
const cacheDir = process.env.WEIR_CACHE ?? join(process.env.HOME ?? '/root', '.cache/weir');

export interface ClusterState {
  pids: Record<string, number>;
  kubeconfig: string;
  apiServer: string;
  prometheusUrl: string;
  meshUrl: string;
  binDir: string;
  /** Set when weir itself runs from the working tree. */
  webhookUrl?: string;
  analyzerUrl?: string;
  /** How each process was started, so a fault test can restart one (the API server, say). */
  commands?: Record<string, { command: string; args: string[] }>;
  prometheusBin?: string;
  prometheusConfig?: string;
  /** How the simulator routes: by istiod's xDS (the default), or by its own reading of the objects. */
  meshRouting?: MeshRouting;
  /** istiod's debug HTTP address, when it runs. */
  istiodUrl?: string;
}

export type MeshRouting = 'istiod' | 'local';

/**
 * Benchmarks measure weir, not the mesh: their simulator routes by its own reading unless
 * `WEIR_MESH_ROUTING` says otherwise, so istiod's CPU on the same 2 cores stays out of the figures.
 */
export const benchRouting = (): MeshRouting => (process.env.WEIR_MESH_ROUTING ? meshRouting() : 'local');

/**
 * The simulator routes by what istiod pushes over xDS unless `WEIR_MESH_ROUTING=local` asks for
 * its own reading of the routing objects (no istiod: a faster start, less CPU).
 */
export function meshRouting(env: NodeJS.ProcessEnv = process.env): MeshRouting {
  const value = env.WEIR_MESH_ROUTING ?? 'istiod';
  if (value !== 'istiod' && value !== 'local')
    throw new Error(`WEIR_MESH_ROUTING must be istiod or local, not ${value}`);
  return value;
}

export interface UpOptions {
  /** Prometheus scrape interval, e.g. `1s`. */
  scrapeInterval?: string;
  /** Fake nodes KWOK manages. */
  nodes?: number;
  log?: (line: string) => void;
  /** Also run weir (webhook and analyzer) from the working tree; off for tests that start their own. */
  weir?: boolean;
  /** How the simulator routes; `WEIR_MESH_ROUTING` (default istiod) when unset. */
  meshRouting?: MeshRouting;
}

async function readVersions(): Promise<Record<string, string>> {
  const text = await readFile(join(repoRoot, 'test/cluster/versions.env'), 'utf8');
  const versions: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(\S+)/.exec(line);
    if (m?.[1] && m[2]) versions[m[1]] = m[2];
  }
  return versions;
}

/** A command of this project's own is cached by its source's hash too, as build.sh computes it. */
async function recipe(command: string): Promise<string> {
  const source = await readFile(join(repoRoot, `test/cluster/${command}/main.go`));
  return createHash('sha256').update(source).digest('hex').slice(0, 12);
}

/** Paths of the built binaries; builds whatever is missing first. */
export async function binaries(log: (l: string) => void = () => undefined): Promise<Record<string, string>> {
  const v = await readVersions();
  const at = (part: string, version: string | undefined, name: string): string =>
    join(cacheDir, 'bin', `${part}-${version ?? 'unknown'}`, name);
  const bins = {
    etcd: at('etcd', v.ETCD_VERSION, 'etcd'),
    apiserver: at('kubernetes', v.KUBERNETES_VERSION, 'kube-apiserver'),
    controllerManager: at('kubernetes', v.KUBERNETES_VERSION, 'kube-controller-manager'),
    scheduler: at('kubernetes', v.KUBERNETES_VERSION, 'kube-scheduler'),
    kubectl: at('kubernetes', v.KUBERNETES_VERSION, 'kubectl'),
    kwok: at('kwok', v.KWOK_VERSION, 'kwok'),
    kwokStages: at('kwok', v.KWOK_VERSION, 'stage'),
    helm: at('helm', v.HELM_VERSION, 'helm'),
    istioctl: at('istioctl', v.ISTIO_VERSION, 'istioctl'),
    istiod: at('istiod', v.ISTIO_VERSION, 'pilot-discovery'),
    istioControlPlane: at('istiod', v.ISTIO_VERSION, 'control-plane.yaml'),
    istioCrds: join(cacheDir, `istio-api-${v.ISTIO_API_VERSION ?? 'unknown'}`, 'crds.yaml'),
    gatewayCrds: join(cacheDir, `gateway-api-${v.GATEWAY_API_VERSION ?? 'unknown'}`, 'crds.yaml'),
    // These two keys hold their source's hash too, as build.sh computes it: a changed program is rebuilt.
    fluxApply: at('flux-apply', `${v.FLUX_SSA_VERSION ?? 'unknown'}-${await recipe('flux-apply')}`, 'flux-apply'),
    luaHealth: at('lua-health', `${v.GOPHER_LUA_VERSION ?? 'unknown'}-${await recipe('lua-health')}`, 'lua-health'),
    xdsView: at('xds-view', `${v.GO_CONTROL_PLANE_VERSION ?? 'unknown'}-${await recipe('xds-view')}`, 'xds-view'),
  };
  const missing = await Promise.all(
    Object.values(bins).map((p) =>
      access(p).then(
        () => false,
        () => true,
      ),
    ),
  );
  if (missing.some(Boolean)) {
    log('building the cluster parts that are not cached yet (test/cluster/build.sh)');
    await run('bash', [join(repoRoot, 'test/cluster/build.sh')], { maxBuffer: 64 * 1024 * 1024 });
  }
  return bins;
}

/** A Prometheus configuration scraping one target (host:port) as `job`. */
export const prometheusConfig = (job: string, target: string, scrape: string): string =>
  [
    'global:',
    `  scrape_interval: ${scrape}`,
    `  evaluation_interval: ${scrape}`,
    'scrape_configs:',
    `- job_name: ${job}`,
    '  static_configs:',
    `  - targets: ['${target}']`,
    '',
  ].join('\n');

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Polls `probe` until it returns true; the error names what was awaited. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`,
  );
}

function startProcess(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  dir = clusterDir,
): number {
  const out = openSync(join(dir, 'logs', `${name}.log`), 'a');
  // detached: its own process group, so `down` can stop it and anything it started.
  const child = spawn(command, args, { detached: true, stdio: ['ignore', out, out], env });
  closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  return child.pid;
}

async function writeKubeconfig(
  path: string,
  server: string,
  caPem: string,
  certPem: string,
  keyPem: string,
): Promise<void> {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  await writeFile(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: weir-local',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority-data: ${b64(caPem)}`,
      'users:',
      '- name: admin',
      '  user:',
      `    client-certificate-data: ${b64(certPem)}`,
      `    client-key-data: ${b64(keyPem)}`,
      'contexts:',
      '- name: weir-local',
      '  context: {cluster: weir-local, user: admin}',
      'current-context: weir-local',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
}

async function writePki(pki: string): Promise<{ caPem: string; admin: { certPem: string; keyPem: string } }> {
  await mkdir(pki, { recursive: true });
  const ca = await createAuthority('weir-local-ca');
  const serving = await issue(ca, {
    commonName: 'kube-apiserver',
    usage: 'server',
    dnsNames: [
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ],
    ipAddresses: ['127.0.0.1', '10.0.0.1'],
  });
  const admin = await issue(ca, { commonName: 'weir-admin', organizations: ['system:masters'], usage: 'client' });
  const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await Promise.all([
    writeFile(join(pki, 'ca.crt'), ca.certPem),
    writeFile(join(pki, 'apiserver.crt'), serving.certPem),
    writeFile(join(pki, 'apiserver.key'), serving.keyPem, { mode: 0o600 }),
    writeFile(join(pki, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 }),
    writeFile(join(pki, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' })),
  ]);
  return { caPem: ca.certPem, admin };
}

/** Runs the cluster's kubectl; rejects with its stderr. */
export async function kubectl(bin: string, kubeconfig: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolveOut, reject) => {
    const child = execFile(
      bin,
      ['--kubeconfig', kubeconfig, ...args],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || error.message}`)) : resolveOut(stdout),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** A program from Debian's package of the same name, installed (apt-get) when the machine lacks it. */
export async function ensureDebianPackage(name: string, log: (l: string) => void = () => undefined): Promise<string> {
  const found = await run('sh', ['-c', `command -v ${name} || test -x /usr/bin/${name} && echo /usr/bin/${name}`]).then(
    (r) => r.stdout.trim().split('\n')[0] ?? '',
    () => '',
  );
  if (found) return found;
  log(`installing Debian's ${name} package (apt-get)`);
  await run(
    'sh',
    [
      '-c',
      `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${name}`,
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return `/usr/bin/${name}`;
}

const ensurePrometheus = (log: (l: string) => void): Promise<string> => ensureDebianPackage('prometheus', log);

async function kwokConfig(stagesDir: string): Promise<string> {
  const files = [
    'node/fast/node-initialize.yaml',
    'node/heartbeat-with-lease/node-heartbeat-with-lease.yaml',
    'pod/fast/pod-ready.yaml',
    'pod/fast/pod-complete.yaml',
    'pod/fast/pod-delete.yaml',
  ];
  const stages = await Promise.all(files.map((f) => readFile(join(stagesDir, f), 'utf8').catch(() => '')));
  const config = [
    'apiVersion: config.kwok.x-k8s.io/v1alpha1',
    'kind: KwokConfiguration',
    'options:',
    '  cidr: 10.244.0.0/16',
    "  manageNodesWithAnnotationSelector: 'kwok.x-k8s.io/node=fake'",
    '  nodeLeaseDurationSeconds: 40',
    '  nodeLeaseParallelism: 4',
    '  podPlayStageParallelism: 4',
    '  nodePlayStageParallelism: 4',
    '  enablePodsOnNodeSyncStreamWatch: true',
    '  enableCRDs: []',
  ].join('\n');
  const path = join(clusterDir, 'kwok.yaml');
  await writeFile(path, [config, ...stages.filter((s) => s.trim())].join('\n---\n'));
  return path;
}

/**
 * The parts of an Istio installation that Istio's analyzers look for in the cluster (issue 15):
 * the ingress gateway's pods (the simulator's gateway entry), behind their usual labels, and the
 * `istio` GatewayClass. KWOK runs the pods; the simulator sends no traffic to the Service.
 */
function meshInfrastructure(): string {
  const labels = { app: 'istio-ingressgateway', istio: 'ingressgateway' };
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'istio-ingressgateway', namespace: 'istio-system', labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.30.0' }] },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: 'istio-ingressgateway',
        namespace: 'istio-system',
        labels,
        annotations: { 'sim.weir.dev/rps': '0' },
      },
      spec: { selector: labels, ports: [{ name: 'http2', port: 80, targetPort: 8080 }] },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: 'istio' },
      spec: { controllerName: 'istio.io/gateway-controller' },
    },
  ];
  return objects.map((o) => JSON.stringify(o)).join('\n---\n');
}

function fakeNode(name: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        type: 'kwok',
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
      },
    },
    spec: {},
    status: {
      allocatable: { cpu: '64', memory: '256Gi', pods: '500' },
      capacity: { cpu: '64', memory: '256Gi', pods: '500' },
    },
  });
}

type Kubectl = (args: string[], input?: string) => Promise<string>;
type Start = (name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv) => void;

/** Runs weir's webhook from the working tree and registers it with the API server by URL. */
async function startWeir(state: ClusterState, k: Kubectl, start: Start): Promise<void> {
  const dir = join(clusterDir, 'weir');
  const { caBundle } = await writeWebhookCerts(dir, 'weir', 'weir-system', ['127.0.0.1']);
  const port = await freePort();
  start('weir-webhook', join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'webhook/main.ts')], {
    // Registered by URL, not behind a Service: no endpoints to drain from.
    ...process.env,
    WEIR_TLS_CERT: join(dir, 'tls.crt'),
    WEIR_TLS_KEY: join(dir, 'tls.key'),
    WEIR_PORT: String(port),
    WEIR_HOST: '127.0.0.1',
    WEIR_DRAIN_SECONDS: '0',
  });
  state.webhookUrl = `https://127.0.0.1:${port}`;
  await saveState(state);
  const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  const dispatcher = new Agent({ connect: { ca } });
  await waitFor(
    'weir webhook /readyz',
    async () => (await request(`${state.webhookUrl}/readyz`, { dispatcher })).statusCode === 200,
    30_000,
  );
  await dispatcher.close();
  await k(
    ['apply', '-f', '-'],
    JSON.stringify(webhookConfiguration({ caBundle, target: { url: `${state.webhookUrl}/mutate` } })),
  );
  await k(['create', 'namespace', 'weir-system']);
  const analyzerPort = await freePort();
  start('weir-analyzer', join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'analyzer/main.ts')], {
    ...process.env,
    NODE_OPTIONS: await analyzerNodeOptions(),
    KUBECONFIG: state.kubeconfig,
    WEIR_PROMETHEUS_URL: state.prometheusUrl,
    WEIR_NAMESPACE: 'weir-system',
    WEIR_ANALYZER_HOST: '127.0.0.1',
    WEIR_ANALYZER_PORT: String(analyzerPort),
    WEIR_SCOPE: `!${analyzerScopeLabel}`,
    WEIR_POLICY_FILE: join(repoRoot, 'test/cluster/policies.yaml'),
  });
  state.analyzerUrl = `http://127.0.0.1:${analyzerPort}`;
  await saveState(state);
  await waitFor(
    'weir analyzer /readyz',
    async () => (await request(`${state.analyzerUrl}/readyz`)).statusCode === 200,
    30_000,
  );
}

/**
 * Runs istiod out of cluster against the local API server: its control-plane ConfigMaps from
 * Istio's chart first (build.sh renders them), no CA, no webhooks to patch. Returns its plaintext
 * xDS address once it is ready.
 */
async function startIstiod(
  state: ClusterState,
  bins: Record<string, string>,
  k: Kubectl,
  start: Start,
): Promise<string> {
  await k(['apply', '--server-side', '-f', bins.istioControlPlane ?? '']);
  const [http, grpc, https, monitoring] = await Promise.all(Array.from({ length: 4 }, () => freePort()));
  start(
    'istiod',
    bins.istiod ?? '',
    [
      'discovery',
      `--kubeconfig=${state.kubeconfig}`,
      `--httpAddr=127.0.0.1:${http}`,
      `--grpcAddr=127.0.0.1:${grpc}`,
      '--secureGRPCAddr=',
      `--httpsAddr=127.0.0.1:${https}`,
      `--monitoringAddr=127.0.0.1:${monitoring}`,
      '--ctrlz_port=0',
    ],
    {
      ...process.env,
      POD_NAMESPACE: 'istio-system',
      POD_NAME: 'istiod-local',
      // Out of cluster: no workload certificates to sign, no webhook configurations of ours to patch.
      ENABLE_CA_SERVER: 'false',
      VALIDATION_WEBHOOK_CONFIG_NAME: '',
      INJECTION_WEBHOOK_CONFIG_NAME: '',
    },
  );
  state.istiodUrl = `http://127.0.0.1:${http}`;
  await saveState(state);
  await waitFor('istiod /ready', async () => (await request(`${state.istiodUrl}/ready`)).statusCode === 200, 90_000);
  return `127.0.0.1:${grpc}`;
}

/** Namespaces with this label are left to an analyzer a test runs itself (kill and failover tests). */
export const analyzerScopeLabel = 'weir.dev/test-analyzer';

export async function readState(): Promise<ClusterState | undefined> {
  try {
    return JSON.parse(await readFile(join(clusterDir, 'state.json'), 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

async function saveState(state: ClusterState): Promise<void> {
  await writeFile(join(clusterDir, 'state.json'), JSON.stringify(state, null, 2));
  const env = [
    `KUBECONFIG=${state.kubeconfig}`,
    `PROMETHEUS_URL=${state.prometheusUrl}`,
    `MESH_URL=${state.meshUrl}`,
    `WEIR_BIN=${state.binDir}`,
    `PATH=${state.binDir}:$PATH`,
    '',
  ];
  await writeFile(join(clusterDir, 'env'), env.map((l) => (l ? `export ${l}` : l)).join('\n'));
}

/**
 * NODE_OPTIONS for an analyzer started here: the chart's `analyzer.nodeOptions`, so tests and
 * benches run it as shipped, after whatever this process was given (tap's coverage hook).
 */
export async function analyzerNodeOptions(): Promise<string> {
  const values = parseYaml(await readFile(join(repoRoot, 'charts/weir/values.yaml'), 'utf8')) as {
    analyzer?: { nodeOptions?: string };
  };
  return [process.env.NODE_OPTIONS, values.analyzer?.nodeOptions].filter(Boolean).join(' ');
}

/** Starts the whole local cluster and returns once every part answers. */
export async function up(options: UpOptions = {}): Promise<ClusterState> {
  const log = options.log ?? ((l: string) => process.stderr.write(`[cluster] ${l}\n`));
  if (await readState()) await down();
  const bins = await binaries(log);
  const prometheusBin = await ensurePrometheus(log);
  await rm(clusterDir, { recursive: true, force: true });
  await mkdir(join(clusterDir, 'logs'), { recursive: true });
  const pki = join(clusterDir, 'pki');
  const { caPem, admin } = await writePki(pki);
  const [etcdPort, peerPort, apiPort, cmPort, schedPort, kwokPort, promPort, meshPort] = await Promise.all(
    Array.from({ length: 8 }, () => freePort()),
  );
  const apiServer = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = join(clusterDir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, apiServer, caPem, admin.certPem, admin.keyPem);
  const state: ClusterState = {
    pids: {},
    kubeconfig,
    apiServer,
    prometheusUrl: `http://127.0.0.1:${promPort}`,
    meshUrl: `http://127.0.0.1:${meshPort}`,
    binDir: dirname(bins.kubectl ?? ''),
  };
  const start = (name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): void => {
    state.pids[name] = startProcess(name, cmd, args, env);
    (state.commands ??= {})[name] = { command: cmd, args };
  };
  try {
    log('starting etcd');
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    start('etcd', bins.etcd ?? '', [
      '--name=weir',
      `--data-dir=${join(clusterDir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=weir=${peerUrl}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
      '--listen-metrics-urls=',
    ]);
    await saveState(state);
    await waitFor('etcd /health', async () => (await request(`${etcdUrl}/health`)).statusCode === 200, 30_000);

    log('starting kube-apiserver');
    start('kube-apiserver', bins.apiserver ?? '', [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
      `--client-ca-file=${join(pki, 'ca.crt')}`,
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--service-cluster-ip-range=10.0.0.0/16',
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
      // WEIR_APISERVER_PROFILING=1: /debug/pprof for a profile of the API server under the scale benchmark.
      `--profiling=${process.env.WEIR_APISERVER_PROFILING === '1'}`,
      '--v=1',
    ]);
    await saveState(state);
    const dispatcher = new Agent({ connect: { ca: caPem, cert: admin.certPem, key: admin.keyPem } });
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        const res = await request(`${apiServer}/readyz`, { dispatcher });
        await res.body.text();
        return res.statusCode === 200;
      },
      90_000,
    );
    await dispatcher.close();

    log('starting kube-controller-manager, kube-scheduler and kwok');
    start('kube-controller-manager', bins.controllerManager ?? '', [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${cmPort}`,
      '--leader-elect=false',
      `--root-ca-file=${join(pki, 'ca.crt')}`,
      `--service-account-private-key-file=${join(pki, 'sa.key')}`,
      '--use-service-account-credentials=false',
      '--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-persistentvolume-binder,-attachdetach',
      '--concurrent-deployment-syncs=10',
      '--concurrent-replicaset-syncs=10',
      // The default 20 requests/s makes 10,000 Deployments (the scale benchmark) take half an hour.
      '--kube-api-qps=200',
      '--kube-api-burst=400',
      '--v=1',
    ]);
    start('kube-scheduler', bins.scheduler ?? '', [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      '--leader-elect=false',
      '--kube-api-qps=200',
      '--kube-api-burst=400',
      '--v=1',
    ]);
    start('kwok', bins.kwok ?? '', [
      `--kubeconfig=${kubeconfig}`,
      `--config=${await kwokConfig(bins.kwokStages ?? '')}`,
      `--server-address=127.0.0.1:${kwokPort}`,
      '--node-ip=127.0.0.1',
    ]);
    await saveState(state);

    log('registering fake nodes, Istio and Gateway API CRDs');
    const k = (args: string[], input?: string): Promise<string> => kubectl(bins.kubectl ?? '', kubeconfig, args, input);
    for (let i = 0; i < (options.nodes ?? 2); i++) await k(['apply', '-f', '-'], fakeNode(`kwok-node-${i}`));
    await k(['apply', '--server-side', '-f', bins.istioCrds ?? '']);
    await k(['apply', '--server-side', '-f', bins.gatewayCrds ?? '']);
    // `kubectl wait` fails outright on a CRD whose status is not written yet: poll instead.
    await waitFor('the CRDs Established', async () => {
      const jsonpath =
        '{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status}{"\\n"}{end}';
      const crds = (await k(['get', 'crd', '-o', `jsonpath=${jsonpath}`])).split('\n').filter(Boolean);
      return crds.length > 0 && crds.every((line) => line.endsWith('=True'));
    });
    await waitFor('fake nodes Ready', async () => {
      const out = await k(['get', 'nodes', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']);
      return out.split(' ').filter((s) => s === 'True').length >= (options.nodes ?? 2);
    });
    await waitFor(
      'the default ServiceAccount',
      async () => (await k(['get', 'serviceaccount', 'default', '-o', 'name']).catch(() => '')) !== '',
    );
    // What Istio's analyzers expect of a mesh: its ingress gateway's pods, and the Gateway API class.
    await k(['apply', '--server-side', '-f', '-'], meshInfrastructure());

    state.meshRouting = options.meshRouting ?? meshRouting();
    const meshArgs = [join(repoRoot, 'test/mesh/main.ts'), `--port=${meshPort}`];
    if (state.meshRouting === 'istiod') {
      log('starting istiod');
      const grpc = await startIstiod(state, bins, k, start);
      meshArgs.push(`--istiod=${grpc}`, `--xds-view=${bins.xdsView ?? ''}`);
    }
    log(`starting the mesh simulator (routing by ${state.meshRouting}) and Prometheus`);
    start('mesh', join(repoRoot, 'node_modules/.bin/node'), meshArgs, { ...process.env, KUBECONFIG: kubeconfig });
    const promConfig = join(clusterDir, 'prometheus.yml');
    const scrape = options.scrapeInterval ?? '1s';
    await writeFile(promConfig, prometheusConfig('mesh', `127.0.0.1:${meshPort}`, scrape));
    state.prometheusBin = prometheusBin;
    state.prometheusConfig = promConfig;
    start('prometheus', prometheusBin, [
      `--config.file=${promConfig}`,
      `--storage.tsdb.path=${join(clusterDir, 'prometheus')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--web.enable-lifecycle',
      '--log.level=warn',
    ]);
    await saveState(state);
    await waitFor(
      'mesh simulator /healthz',
      async () => (await request(`${state.meshUrl}/healthz`)).statusCode === 200,
      60_000,
    );
    await waitFor(
      'Prometheus /-/ready',
      async () => (await request(`${state.prometheusUrl}/-/ready`)).statusCode === 200,
      60_000,
    );
    if (options.weir !== false) await startWeir(state, k, start);
    log(`ready: source ${join(clusterDir, 'env')}`);
    return state;
  } catch (error) {
    log(`start failed, stopping what was started; logs are in ${join(clusterDir, 'logs')}`);
    await down({ keepLogs: true });
    throw error;
  }
}

/** Whether a process still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Stops a single cluster process by name (a fault test stops Prometheus, say). */
export async function stopProcess(state: ClusterState, name: string): Promise<void> {
  const pid = state.pids[name];
  if (pid === undefined) throw new Error(`no process named ${name}`);
  signalGroup(pid, 'SIGTERM');
  await waitFor(`${name} to stop`, () => Promise.resolve(!alive(pid)), 20_000, 100).catch(() =>
    signalGroup(pid, 'SIGKILL'),
  );
}

/** Restarts one process of the cluster kept in `dir` with the command it was started with. */
export async function restartProcess(dir: string, name: string): Promise<void> {
  const path = join(dir, 'state.json');
  const state = JSON.parse(await readFile(path, 'utf8')) as ClusterState;
  const pid = state.pids[name];
  const command = state.commands?.[name];
  if (pid === undefined || !command) throw new Error(`no process named ${name} in ${dir}`);
  signalGroup(pid, 'SIGTERM');
  // A graceful stop of the API server waits for its watches; past 10 s it is killed.
  await waitFor(`${name} to stop`, () => Promise.resolve(!alive(pid)), 10_000, 100).catch(async () => {
    signalGroup(pid, 'SIGKILL');
    await waitFor(`${name} to be killed`, () => Promise.resolve(!alive(pid)), 10_000, 100);
  });
  state.pids[name] = startProcess(name, command.command, command.args, process.env, dir);
  await writeFile(path, JSON.stringify(state, null, 2));
}

/** Stops every process the cluster started, by PID, and removes its state. */
export async function down(options: { keepLogs?: boolean } = {}): Promise<void> {
  const state = await readState();
  const pids = Object.values(state?.pids ?? {});
  for (const pid of pids.reverse()) signalGroup(pid, 'SIGTERM');
  await waitFor('cluster processes to stop', () => Promise.resolve(pids.every((p) => !alive(p))), 15_000, 100).catch(
    () => {
      for (const pid of pids) signalGroup(pid, 'SIGKILL');
    },
  );
  if (options.keepLogs) {
    const entries = await readdir(clusterDir).catch(() => [] as string[]);
    await Promise.all(
      entries.filter((e) => e !== 'logs').map((e) => rm(join(clusterDir, e), { recursive: true, force: true })),
    );
  } else {
    await rm(clusterDir, { recursive: true, force: true });
  }
}
