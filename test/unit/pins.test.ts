// The Node the project runs on is one exact version everywhere (issue 12): the devDependency, the
// one package allowed to run install scripts, the image, and the lockfile.
import t from 'tap';
import { readFileSync } from 'node:fs';

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

t.test(
  'node is pinned to one exact version in package.json, its allowScripts, the lockfile and the image',
  async (t) => {
    const pkg = JSON.parse(read('package.json')) as {
      devDependencies: Record<string, string>;
      allowScripts: Record<string, boolean>;
    };
    const version = pkg.devDependencies.node ?? '';
    t.match(version, /^\d+\.\d+\.\d+$/, 'an exact version, no range');
    t.same(Object.keys(pkg.allowScripts), [`node@${version}`], 'only that node may run install scripts');
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string }> };
    t.equal(lock.packages['node_modules/node']?.version, version, 'the lockfile agrees');
    const images = [...read('Dockerfile').matchAll(/^FROM node:(\S+?)-/gm)].map((m) => m[1]);
    t.ok(images.length > 0, 'the image is built on node');
    t.same(new Set(images), new Set([version]), 'every stage of the image on the same version');
    t.equal(process.versions.node, version, 'and the tests run on it');
  },
);
