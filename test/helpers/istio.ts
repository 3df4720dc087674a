// Istio's own verdict on what weir writes (issue 15): `istioctl analyze` on a namespace of the
// local cluster, and `istioctl validate` on objects, with the istioctl build/cluster.sh pins.
import { execFile } from 'node:child_process';
import { binaries } from '../cluster/cluster.ts';
import { cluster, kubectl } from './kube.ts';
import { waitForPhase, waitForWeight } from './release.ts';

export interface AnalysisMessage {
  code: string;
  level: 'Error' | 'Warning' | 'Info';
  message: string;
  /** `Kind namespace/name`, e.g. `VirtualService shop/web`. */
  origin: string;
}

async function istioctl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const [bins, state] = await Promise.all([binaries(), cluster()]);
  return new Promise((resolve) => {
    const child = execFile(
      bins.istioctl ?? 'istioctl',
      [...args, '--kubeconfig', state.kubeconfig],
      { maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Every message Istio's analyzers have about one namespace of the live cluster. */
export async function analyze(ns: string): Promise<AnalysisMessage[]> {
  const r = await istioctl(['analyze', '-n', ns, '-o', 'json']);
  const text = r.stdout.trim();
  // With nothing to report, istioctl prints no JSON list but a line of text.
  if (!text.startsWith('[')) {
    if (r.code !== 0) throw new Error(`istioctl analyze failed (${r.code}): ${r.stderr}`);
    return [];
  }
  return JSON.parse(text) as AnalysisMessage[];
}

/**
 * Messages that judge weir: any Warning or Error, and any message about an object weir created or
 * changed (`origins`, as `Kind namespace/name`; a Pod is always one: weir labels them).
 */
export function weirCaused(messages: AnalysisMessage[], origins: string[]): AnalysisMessage[] {
  // weir never writes a Gateway: what istioctl says of one (IST0145, two namespaces' Gateways on
  // one host, as test namespaces running side by side have) is about the user's objects.
  return messages.filter(
    (m) =>
      !m.origin.startsWith('Gateway ') &&
      (m.level !== 'Info' || m.origin.startsWith('Pod ') || origins.includes(m.origin)),
  );
}

/** `istioctl validate` over the live objects named (`kind/name`): its verdict and what it said. */
export async function validate(ns: string, objects: string[]): Promise<{ ok: boolean; output: string }> {
  const yaml = await kubectl(['get', '-n', ns, '-o', 'yaml', ...objects]);
  const r = await istioctl(['validate', '-f', '-'], yaml);
  return { ok: r.code === 0, output: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * Runs `istioctl analyze` each time the release reaches one of `steps` (and once it is Stable),
 * collecting what judges weir: a test awaits the result after the release. `objects` are weir's
 * (created or changed), as `Kind name` in `ns`.
 */
export function analyzeAtSteps(
  ns: string,
  name: string,
  objects: string[],
  steps: number[] = [10, 50, 100],
): Promise<{ at: string; caused: AnalysisMessage[]; info: AnalysisMessage[] }[]> {
  const origins = objects.map((o) => o.replace(' ', ` ${ns}/`));
  return (async () => {
    const seen = [];
    for (const weight of steps) {
      await waitForWeight(ns, name, weight, 120_000);
      const messages = await analyze(ns);
      seen.push({ at: `${weight} %`, caused: weirCaused(messages, origins), info: messages });
    }
    await waitForPhase(ns, name, 'Stable');
    const messages = await analyze(ns);
    seen.push({ at: 'Stable', caused: weirCaused(messages, origins), info: messages });
    return seen;
  })();
}
