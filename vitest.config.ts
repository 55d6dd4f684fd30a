import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'
import { STORE_KINDS } from './packages/core/src/store-registry.js'

// Tests run against the TypeScript sources of every workspace package, so `pnpm test`
// needs no build step and a change in core is seen by every adapter's suite at once.
const src = (path: string) => fileURLToPath(new URL(`./packages/${path}`, import.meta.url))
// One project and one alias pair per shipped store, from the registry.
const adapters = STORE_KINDS

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@txbox\/core\/nats$/, replacement: src('core/src/nats/index.ts') },
      { find: /^@txbox\/core$/, replacement: src('core/src/index.ts') },
      { find: /^@txbox\/relay$/, replacement: src('relay/src/index.ts') },
      { find: /^@txbox\/conformance\/vitest$/, replacement: src('conformance/src/vitest.ts') },
      { find: /^@txbox\/conformance$/, replacement: src('conformance/src/index.ts') },
      ...adapters.flatMap((name) => [
        {
          find: new RegExp(`^@txbox/${name}/conformance$`),
          replacement: src(`${name}/src/conformance-target.ts`),
        },
        { find: new RegExp(`^@txbox/${name}$`), replacement: src(`${name}/src/index.ts`) },
      ]),
    ],
  },
  test: {
    // Integration suites talk to real servers; a generous ceiling keeps a slow CI machine
    // from failing a correct run, while a hung server still fails.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    projects: ['core', 'conformance', ...adapters, 'relay', 'bench'].map((name) => ({
      extends: true,
      test: { name, root: `packages/${name}`, include: ['test/**/*.test.ts'] },
    })),
  },
})
