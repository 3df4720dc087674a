// Template revisions are recorded in clusters (stable-revision, canary-revision): the hash must
// never change between versions of weir, whatever the key order an object arrives in. The
// reference here is the plain definition — sha256 over JSON of a deep copy with sorted keys.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { templateRevision } from '../../contract/revision.ts';
import { seededRandom } from '../helpers/model.ts';

function sortedCopy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedCopy);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = sortedCopy(v);
  }
  return out;
}

function reference(template: { metadata?: Record<string, unknown> }): string {
  const strip = (map: unknown): Record<string, unknown> | undefined => {
    const kept = Object.entries((map ?? {}) as Record<string, unknown>).filter(([k]) => !k.startsWith('weir.dev/'));
    return kept.length > 0 ? Object.fromEntries(kept) : undefined;
  };
  const metadata = { ...(template.metadata ?? {}) };
  metadata.labels = strip(metadata.labels);
  metadata.annotations = strip(metadata.annotations);
  const body = JSON.stringify(sortedCopy({ ...template, metadata }));
  return createHash('sha256').update(body).digest('hex').slice(0, 10);
}

/** The same value with every object's keys in a random order. */
function shuffled(value: unknown, rand: () => number): unknown {
  if (Array.isArray(value)) return value.map((v) => shuffled(v, rand));
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const a = entries[i];
    const b = entries[j];
    if (a && b) [entries[i], entries[j]] = [b, a];
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, shuffled(v, rand)]));
}

const templates = readdirSync(new URL('../fixtures/admission/', import.meta.url))
  .filter((f) => f.endsWith('.json'))
  .flatMap((f) => {
    const review = JSON.parse(readFileSync(new URL(`../fixtures/admission/${f}`, import.meta.url), 'utf8')) as {
      request: { object?: { spec?: { template?: object } }; oldObject?: { spec?: { template?: object } } };
    };
    return [review.request.object?.spec?.template, review.request.oldObject?.spec?.template].flatMap((x) =>
      x ? [{ name: f, template: x }] : [],
    );
  });

t.test('every recorded template hashes as the plain definition does, in any key order', async (t) => {
  t.ok(templates.length >= 10, `${templates.length} templates from the recorded reviews`);
  const rand = seededRandom(13);
  for (const { name, template } of templates) {
    const expected = reference(template);
    t.equal(templateRevision(template), expected, name);
    for (let i = 0; i < 5; i++) t.equal(templateRevision(shuffled(template, rand)), expected, `${name}, shuffled ${i}`);
  }
});

t.test('hashing never changes the template it reads', async (t) => {
  const template = templates[0]?.template;
  if (!template) return t.fail('no template');
  const before = JSON.stringify(template);
  templateRevision(template);
  t.equal(JSON.stringify(template), before);
});
