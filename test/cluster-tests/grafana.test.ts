// The chart's Grafana board (issue 16): rendered only when asked for, in a ConfigMap Grafana's
// sidecar loads, and every metric its panels read is one that weir or the mesh really exports.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { parseAllDocuments } from 'yaml';
import { clusterDir } from '../cluster/cluster.ts';
import { chart, helm } from '../helpers/chart.ts';
import { cluster } from '../helpers/kube.ts';

interface Dashboard {
  title: string;
  panels: { title: string; targets: { expr: string }[] }[];
}

async function render(
  extra: string[],
): Promise<
  { kind?: string; metadata?: { name?: string; labels?: Record<string, string> }; data?: Record<string, string> }[]
> {
  const r = await helm([
    'template',
    'r',
    chart,
    '-n',
    'weir-system',
    '--set',
    'prometheus.url=http://p:9090',
    ...extra,
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON() as never);
}

/** The series names a PromQL expression reads (a histogram's `_bucket` is its own exported series). */
const metricsIn = (expr: string): string[] =>
  [...expr.matchAll(/\b((?:weir|istio)_[a-z_]+)\b/g)].map((m) => m[1] ?? '');

t.test('the board: off by default; on, a ConfigMap with the sidecar label and a board that parses', async (t) => {
  const off = await render([]);
  t.notOk(
    off.some((o) => o.metadata?.name === 'r-weir-dashboard'),
    'not rendered unless enabled',
  );
  const on = await render(['--set', 'grafanaDashboard.enabled=true']);
  const cm = on.find((o) => o.kind === 'ConfigMap' && o.metadata?.name === 'r-weir-dashboard');
  t.equal(cm?.metadata?.labels?.grafana_dashboard, '1', "Grafana's sidecar label");
  const board = JSON.parse(cm?.data?.['weir.json'] ?? '{}') as Dashboard;
  t.equal(board.title, 'weir: canary releases');
  const titles = board.panels.map((p) => p.title);
  for (const want of [
    'Releases by phase',
    'Canary weight',
    'Checks by result',
    'Promotions and rollbacks',
    'Webhook admissions',
    'Webhook latency',
    'Analyzer reconcile duration',
  ])
    t.ok(titles.includes(want), `a panel: ${want}`);
});

t.test('every metric the board reads is exported by the analyzer, the webhook or the mesh', async (t) => {
  const board = JSON.parse(await readFile(join(chart, 'dashboards/weir.json'), 'utf8')) as Dashboard;
  const used = new Set(board.panels.flatMap((p) => p.targets.flatMap((x) => metricsIn(x.expr))));
  t.ok(used.size >= 8, `the board reads ${used.size} metrics`);
  const state = await cluster();
  const ca = await readFile(join(clusterDir, 'weir', 'ca.crt'), 'utf8');
  const dispatcher = new Agent({ connect: { ca } });
  t.teardown(() => dispatcher.close());
  const text = async (url: string, withCa = false): Promise<string> =>
    (await request(`${url}/metrics`, withCa ? { dispatcher } : {})).body.text();
  const exported = [
    await text(state.analyzerUrl ?? ''),
    await text(state.webhookUrl ?? '', true),
    await text(state.meshUrl),
  ].join('\n');
  const names = new Set(
    [...exported.matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap((m) => {
      const name = m[1] ?? '';
      return m[2] === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
    }),
  );
  for (const metric of used) t.ok(names.has(metric), `${metric} is exported`);
});
