import { readFileSync } from 'node:fs'

/** The suite's version, from its package.json (the same file in `src/` and `dist/`). */
export const SUITE_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version
