import { existsSync, readFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { STORE_KINDS } from '@txbox/core'
import { createMemoryTarget } from './memory-target.js'
import type { ConformanceTarget, ConformanceTargetModule } from './target.js'

/** The reference store, then every shipped adapter, whose target is published at `@txbox/<name>/conformance`. */
export const BUILT_IN_TARGETS: readonly string[] = Object.freeze(['memory', ...STORE_KINDS])

const looksLikePath = (spec: string): boolean =>
  spec.startsWith('.') || isAbsolute(spec) || /\.(c|m)?js$/.test(spec) || spec.includes('/')

/**
 * Finds `@txbox/<name>`'s `./conformance` entry by walking up from `cwd` through
 * `node_modules`, the way Node would resolve it for the user's project (the CLI itself does
 * not depend on the adapters).
 */
const resolveAdapterTarget = (name: string, cwd: string): string => {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const manifest = join(dir, 'node_modules', '@txbox', name, 'package.json')
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as {
        exports?: Record<string, { import?: string; default?: string }>
      }
      const entry = pkg.exports?.['./conformance']
      const file = entry?.import ?? entry?.default
      if (!file) throw new Error(`@txbox/${name} at ${dirname(manifest)} has no "./conformance" export`)
      return join(dirname(manifest), file)
    }
    if (dirname(dir) === dir) break
  }
  throw new Error(
    `@txbox/${name} is not installed here (looked for node_modules/@txbox/${name} from ${cwd} upwards): pnpm add -D @txbox/${name}`,
  )
}

/** Loads a target by built-in name or module path; the module must export `createConformanceTarget()`. */
export const loadTarget = async (spec: string, cwd = process.cwd()): Promise<ConformanceTarget> => {
  if (spec === 'memory') return createMemoryTarget()
  let file: string
  if (BUILT_IN_TARGETS.includes(spec)) file = resolveAdapterTarget(spec, cwd)
  else if (looksLikePath(spec)) file = resolve(cwd, spec)
  else
    throw new Error(
      `unknown target ${JSON.stringify(spec)}: use one of ${BUILT_IN_TARGETS.join(', ')} or a module path such as ./my-target.js`,
    )
  if (!existsSync(file)) throw new Error(`target module not found: ${file}`)
  const module = (await import(pathToFileURL(file).href)) as Partial<ConformanceTargetModule>
  if (typeof module.createConformanceTarget !== 'function') {
    throw new Error(`${file} must export a function createConformanceTarget() returning a ConformanceTarget`)
  }
  const target = await module.createConformanceTarget()
  // Capabilities are checked by the run, which reports a malformed declaration as a target error.
  if (!target || typeof target.name !== 'string' || typeof target.create !== 'function') {
    throw new Error(
      `${file}: createConformanceTarget() did not return a target with name, capabilities and create()`,
    )
  }
  return target
}
