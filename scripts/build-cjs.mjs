#!/usr/bin/env node
// Adds the CommonJS build beside the ES module build that `tsc -b` wrote to `dist/`:
// every `dist/**/*.js` gets a `.cjs` twin and every `.d.ts` a `.d.cts` twin, in the same
// folder, so `require()` works on every Node we support (and under Jest, which has no
// require(esm)), and TypeScript sees CommonJS types for `require` under node16/nodenext.
//
// Same folder on purpose: `new URL('../migrations/', import.meta.url)` and
// `../package.json` must point at the same files from both builds.
//
// Run from a package folder: `node ../../scripts/build-cjs.mjs` (after `tsc -b`).
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { transform } from 'esbuild'

const dist = join(process.cwd(), 'dist')
const IMPORT_META_URL = '__txbox_import_meta_url'

const files = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : [path]
  })

// Relative specifiers end in `.js` in tsc's output (NodeNext); the twins end in `.cjs`.
const toCjsSpecifiers = (code) =>
  code
    .replace(/(\brequire\(\s*)(["'])(\.{1,2}\/[^"']*)\.js\2/g, '$1$2$3.cjs$2')
    .replace(/(\bimport\(\s*)(["'])(\.{1,2}\/[^"']*)\.js\2/g, '$1$2$3.cjs$2')
const toCtsSpecifiers = (code) =>
  code.replace(/((?:\bfrom\s+|\bimport\(\s*))(["'])(\.{1,2}\/[^"']*)\.js\2/g, '$1$2$3.cjs$2')

const fail = (message) => {
  console.error(`[txbox] [build-cjs] ${message}`)
  process.exit(1)
}

let all
try {
  all = files(dist)
} catch {
  fail(`no ${dist}: run tsc -b first`)
}

// Twins of files that no longer exist would be shipped stale.
for (const file of all) {
  if (file.endsWith('.d.cts') || (file.endsWith('.cjs') && !file.endsWith('.d.cjs'))) rmSync(file)
}

let count = 0
for (const file of all) {
  const name = relative(dist, file)
  if (file.endsWith('.d.ts')) {
    writeFileSync(file.replace(/\.d\.ts$/, '.d.cts'), toCtsSpecifiers(readFileSync(file, 'utf8')))
  } else if (file.endsWith('.js')) {
    let source = readFileSync(file, 'utf8')
    const usesMetaUrl = source.includes('import.meta.url')
    source = source.replaceAll('import.meta.url', IMPORT_META_URL)
    if (source.includes('import.meta'))
      fail(`${name} uses import.meta beyond import.meta.url: teach this script`)
    const { code, warnings } = await transform(source, {
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      loader: 'js',
      sourcefile: name,
      banner: usesMetaUrl
        ? `const ${IMPORT_META_URL} = require("node:url").pathToFileURL(__filename).href;`
        : '',
    })
    if (warnings.length > 0) fail(`${name}: ${warnings.map((w) => w.text).join('; ')}`)
    writeFileSync(file.replace(/\.js$/, '.cjs'), toCjsSpecifiers(code))
    count++
  }
}
if (count === 0) fail(`no .js files in ${dist}`)
