// Builds thumbnailer.js into a component for the `endpoint` world with componentize-js's
// API (its CLI through jco 1.35 fails here). `http` (fetch() = wasi:http/outgoing-handler) is
// disabled: Easel refuses components that could make outgoing requests.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, 'thumbnailer.wasm');

// StarlingMonkey's built-in fetch-event handler exports `wasi:http/incoming-handler@0.2.10`,
// while wit/ vendors wasi 0.2.12. The 0.2.x releases are interface-compatible (the host links
// any 0.2.x by semver), so build against a copy of wit/ that names 0.2.10 (package versions
// and `@since` gates alike).
const STARLINGMONKEY_WASI = '0.2.10';
const wit = await mkdtemp(join(tmpdir(), 'thumbnailer-wit-'));
const copy = async (from, to) => {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      await copy(join(from, entry.name), join(to, entry.name));
    } else if (entry.name.endsWith('.wit')) {
      const text = await readFile(join(from, entry.name), 'utf8');
      await writeFile(join(to, entry.name), text.replace(/\b0\.2\.1[1-9]\b/g, STARLINGMONKEY_WASI));
    }
  }
};
await copy(join(here, '../../wit'), wit);
const { component } = await componentize({
  sourcePath: join(here, 'thumbnailer.js'),
  witPath: wit,
  worldName: 'easel:plugin/endpoint',
  disableFeatures: ['http'],
});
await rm(wit, { recursive: true, force: true });
await writeFile(out, component);
console.error(`wrote ${out} (${component.length} bytes)`);
