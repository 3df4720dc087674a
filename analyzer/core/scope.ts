// Which namespaces one analyzer serves: a label selector over namespace labels (`k=v`, `k!=v`,
// `k`, `!k`, comma = and). Empty serves every namespace; shards and tests split the cluster with it.
export type Scope = (namespaceLabels: Record<string, string>) => boolean;

export function parseScope(selector: string): Scope {
  const terms = selector
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((term) => {
      const ne = /^([^!=]+)!=(.*)$/.exec(term);
      if (ne?.[1] !== undefined) {
        const [key, value] = [ne[1].trim(), (ne[2] ?? '').trim()];
        return (l: Record<string, string>) => l[key] !== value;
      }
      const eq = /^([^!=]+)==?(.*)$/.exec(term);
      if (eq?.[1] !== undefined) {
        const [key, value] = [eq[1].trim(), (eq[2] ?? '').trim()];
        return (l: Record<string, string>) => l[key] === value;
      }
      if (term.startsWith('!')) {
        const key = term.slice(1).trim();
        return (l: Record<string, string>) => !(key in l);
      }
      return (l: Record<string, string>) => term in l;
    });
  return (labels) => terms.every((t) => t(labels));
}
