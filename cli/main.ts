// `weir` (also `kubectl weir`): watch releases, and ask the analyzer to promote, abort or retry.
// Requests are annotations on the Deployment; the analyzer carries them out and records an event.
import { parseArgs } from 'node:util';
import { AppsV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { V1Deployment } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { annotations, canaryName, labels, pointer } from '../contract/names.ts';
import type { Request } from '../contract/names.ts';
import { describeError, isNotFound, maybe } from '../contract/api.ts';
import { readCanaryWeight } from '../contract/istio.ts';
import type { VirtualService } from '../contract/istio.ts';
import { gatewayGroup, gatewayVersion, readRuleWeight } from '../contract/gateway.ts';
import type { HTTPRoute } from '../contract/gateway.ts';
import { parseStatus } from '../contract/status.ts';
import { buildSummary, renderDetail, renderTable } from './view.ts';
import type { ReleaseSummary } from './view.ts';
import { serveDashboard } from './dashboard.ts';

const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

/** Exit codes, documented in the README. */
export const exitCodes = { ok: 0, error: 1, usage: 2, notFound: 3, notApplicable: 4 } as const;

export class CliError extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

const usage = `weir — watch and steer canary releases of plain Deployments

Usage:
  weir get [NAME] [-n NS | -A] [--watch] [-o json|yaml]
  weir promote NAME [--full]     end the current pause (--full: skip the remaining steps)
  weir abort NAME                roll back now: 100 % to stable
  weir retry NAME                start a rolled-back release again
  weir dashboard [-A] [--port 3100]
                                 a live web page of the releases on http://localhost, with your kubeconfig

Flags: --kubeconfig PATH, --context NAME, -n/--namespace NS, -A/--all-namespaces, -o/--output json|yaml
Exit codes: 0 ok, 1 error talking to the cluster, 2 usage, 3 not found or not under weir,
            4 the request does not apply to the release's phase`;

export interface Clients {
  kc: KubeConfig;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  namespace: string;
}

export function clients(values: { kubeconfig?: string; context?: string; namespace?: string }): Clients {
  const kc = new KubeConfig();
  if (values.kubeconfig) kc.loadFromFile(values.kubeconfig);
  else kc.loadFromDefault();
  if (values.context) kc.setCurrentContext(values.context);
  const namespace = values.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  return {
    kc,
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    namespace,
  };
}

/** Guarded by weir: it has had a release, or the webhook stamped its template when it was created. */
export const underWeir = (d: V1Deployment): boolean =>
  !d.metadata?.labels?.[labels.canaryOf] &&
  (d.metadata?.annotations?.[annotations.phase] !== undefined ||
    d.spec?.template.metadata?.labels?.[labels.track] !== undefined);

/** The canary weight on the route weir's record names; undefined when there is none or it cannot be read. */
async function weightOnRoute(c: Clients, d: V1Deployment): Promise<number | undefined> {
  const route = parseStatus(d.metadata?.annotations?.[annotations.status])?.route;
  if (!route) return undefined;
  const namespace = d.metadata?.namespace ?? '';
  const object: unknown = await maybe(() =>
    c.custom.getNamespacedCustomObject(
      route.kind === 'HTTPRoute'
        ? { group: gatewayGroup, version: gatewayVersion, namespace, plural: 'httproutes', name: route.name }
        : { group: 'networking.istio.io', version: 'v1', namespace, plural: 'virtualservices', name: route.name },
    ),
  );
  if (!object) return undefined;
  const read =
    route.kind === 'HTTPRoute'
      ? readRuleWeight(object as HTTPRoute, {
          rule: route.route,
          stableService: route.stableSubset,
          canaryService: route.canarySubset,
        })
      : readCanaryWeight(object as VirtualService, route);
  return read.ok ? read.canaryWeight : undefined;
}

/** One release as `weir get` shows it: weir's record on the Deployment, its two halves, and the route. */
export async function summaryOf(c: Clients, d: V1Deployment): Promise<ReleaseSummary> {
  const namespace = d.metadata?.namespace ?? '';
  const [weight, replicaSets, canary] = await Promise.all([
    weightOnRoute(c, d),
    c.apps.listNamespacedReplicaSet({ namespace }),
    maybe(() => c.apps.readNamespacedDeployment({ namespace, name: canaryName(d.metadata?.name ?? '') })),
  ]);
  const owned = replicaSets.items.filter((rs) => rs.metadata?.ownerReferences?.some((o) => o.uid === d.metadata?.uid));
  return buildSummary(d, canary, owned, weight, new Date());
}

async function getOne(c: Clients, name: string): Promise<V1Deployment> {
  const d = await c.apps.readNamespacedDeployment({ namespace: c.namespace, name }).catch((error: unknown) => {
    if (isNotFound(error)) throw new CliError(`deployment ${c.namespace}/${name} not found`, exitCodes.notFound);
    throw error;
  });
  if (!underWeir(d))
    throw new CliError(
      `deployment ${c.namespace}/${name} is not under weir: label its namespace weir.dev/canary=enabled ` +
        '(Deployments created before that are guarded from their next release)',
      exitCodes.notFound,
    );
  return d;
}

async function views(c: Clients, name: string | undefined, all: boolean): Promise<ReleaseSummary[]> {
  if (name) return [await summaryOf(c, await getOne(c, name))];
  const list = all
    ? await c.apps.listDeploymentForAllNamespaces()
    : await c.apps.listNamespacedDeployment({ namespace: c.namespace });
  return Promise.all(list.items.filter(underWeir).map((d) => summaryOf(c, d)));
}

function render(vs: ReleaseSummary[], output: string | undefined, name: string | undefined, all: boolean): string {
  if (output === 'json') return JSON.stringify(name ? vs[0] : vs, null, 2);
  if (output === 'yaml') return toYaml(name ? vs[0] : vs).trimEnd();
  if (output !== undefined) throw new CliError(`-o ${output}: use json or yaml`, exitCodes.usage);
  if (name && vs[0]) return renderDetail(vs[0]);
  return vs.length === 0 ? `No releases in ${all ? 'any namespace' : 'this namespace'}.` : renderTable(vs, all);
}

async function get(
  c: Clients,
  name: string | undefined,
  options: { all: boolean; watch: boolean; output?: string },
): Promise<void> {
  if (!options.watch) {
    process.stdout.write(`${render(await views(c, name, options.all), options.output, name, options.all)}\n`);
    return;
  }
  for (;;) {
    const text = render(await views(c, name, options.all), options.output, name, options.all);
    // Redraw in place: clear the screen, cursor home.
    process.stdout.write(`\x1b[2J\x1b[H${text}\n\n(watching; Ctrl-C to stop)\n`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** What each request needs of the release, and the words for when it does not apply. */
function check(request: Request, d: V1Deployment): void {
  const phase = d.metadata?.annotations?.[annotations.phase] ?? 'Stable';
  const name = `${d.metadata?.namespace ?? ''}/${d.metadata?.name ?? ''}`;
  if (request === 'retry' && phase !== 'RolledBack')
    throw new CliError(`${name} has no rolled-back release to retry (phase ${phase})`, exitCodes.notApplicable);
  if (request !== 'retry' && phase !== 'Progressing')
    throw new CliError(`${name} has no release in progress (phase ${phase})`, exitCodes.notApplicable);
}

/**
 * Asks the analyzer for `request` on one release (the CLI's and the dashboard's one way to):
 * refused with a CliError when it does not apply to the release's phase; returns what was done.
 */
export async function requestRelease(c: Clients, name: string, request: Request): Promise<string> {
  const d = await getOne(c, name);
  check(request, d);
  const ops = [
    ...(d.metadata?.annotations ? [] : [{ op: 'add', path: '/metadata/annotations', value: {} }]),
    { op: 'add', path: `/metadata/annotations/${pointer(annotations.request)}`, value: request },
  ];
  await c.apps.patchNamespacedDeployment({ namespace: c.namespace, name, body: ops }, jsonPatch);
  return (
    `${request} requested for ${c.namespace}/${name}; the analyzer carries it out and records an event ` +
    `(kubectl describe deployment ${name})`
  );
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      'all-namespaces': { type: 'boolean', short: 'A', default: false },
      output: { type: 'string', short: 'o' },
      watch: { type: 'boolean', short: 'w', default: false },
      full: { type: 'boolean', default: false },
      port: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, name, extra] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${usage}\n`);
    return values.help ? exitCodes.ok : exitCodes.usage;
  }
  if (extra !== undefined) throw new CliError(`unexpected argument "${extra}"`, exitCodes.usage);
  const c = clients(values);
  switch (command) {
    case 'get':
      await get(c, name, {
        all: values['all-namespaces'],
        watch: values.watch,
        ...(values.output ? { output: values.output } : {}),
      });
      return exitCodes.ok;
    case 'promote':
    case 'abort':
    case 'retry': {
      if (!name) throw new CliError(`weir ${command} needs the name of a Deployment`, exitCodes.usage);
      const request: Request = command === 'promote' ? (values.full ? 'promote-full' : 'promote') : command;
      process.stdout.write(`${await requestRelease(c, name, request)}\n`);
      return exitCodes.ok;
    }
    case 'dashboard': {
      const port = Number(values.port ?? '3100');
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new CliError(`--port ${values.port ?? ''}: not a port`, exitCodes.usage);
      const dashboard = await serveDashboard(c, { port, allNamespaces: values['all-namespaces'] });
      process.stdout.write(`weir dashboard on ${dashboard.url} (Ctrl-C to stop)\n`);
      await dashboard.closed;
      return exitCodes.ok;
    }
    default:
      throw new CliError(`unknown command "${command}"\n\n${usage}`, exitCodes.usage);
  }
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const known = error instanceof CliError;
      const usageError =
        error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS');
      process.stderr.write(`weir: ${known || usageError ? (error as Error).message : describeError(error)}\n`);
      process.exitCode = known ? error.code : usageError ? exitCodes.usage : exitCodes.error;
    },
  );
}
