// Proves the root README's quick start runs as written: takes the first ```js block under
// "## Quick start" from README.md, checks it is examples/quickstart/quickstart.mjs (so the two
// cannot drift apart), and runs that block with node in a fresh directory against the real NATS
// (TXBOX_NATS_URL, else localhost), as a reader who pasted it into a file would.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const fail = (message) => {
  console.error(`[readme-quickstart] ${message}`)
  process.exit(1)
}

const readme = readFileSync(join(root, 'README.md'), 'utf8')
const section = readme.split(/^## Quick start$/m)[1]
if (section === undefined) fail('README.md has no "## Quick start" heading')
const block = /^```js\n([\s\S]*?)^```$/m.exec(section.split(/^## /m)[0])?.[1]
if (block === undefined) fail('the "## Quick start" section of README.md has no ```js block')

const example = readFileSync(join(root, 'examples/quickstart/quickstart.mjs'), 'utf8')
if (block !== example)
  fail(
    'the quick start in README.md differs from examples/quickstart/quickstart.mjs: make them identical ' +
      '(edit one, copy it into the other)',
  )

// The block must sit inside the workspace package so that its imports resolve as they would in an
// app that installed @txbox/core, @txbox/sqlite, better-sqlite3 and nats; it runs in an empty
// directory, where it creates its database files.
const script = join(root, 'examples/quickstart/.readme-quickstart.mjs')
const cwd = mkdtempSync(join(tmpdir(), 'txbox-quickstart-'))
writeFileSync(script, block)
const run = spawnSync(process.execPath, [script], { cwd, encoding: 'utf8', timeout: 60_000 })
rmSync(script, { force: true })
rmSync(cwd, { recursive: true, force: true })
process.stderr.write(run.stderr ?? '')
if (run.error) fail(`the quick start did not finish: ${run.error.message}`)
if (run.status !== 0) fail(`the quick start exited with ${run.status}`)
if (!/^order [0-9a-f-]{36}: 1 invoice$/m.test(run.stdout))
  fail(`the quick start did not report one invoice; it printed:\n${run.stdout}`)
process.stdout.write(`README quick start ran as written: ${run.stdout}`)
