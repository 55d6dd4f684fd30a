import { readFileSync } from 'node:fs'
import { availableParallelism, loadavg, release, totalmem } from 'node:os'
import type { Machine } from './results.js'

const read = (file: string): string => {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

export const loadAverage = (): string =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(', ')

export const machineInfo = (): Machine => {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(read('/proc/cpuinfo'))?.[1]?.trim() ?? 'unknown'
  const os = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(read('/etc/os-release'))?.[1] ?? process.platform
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpus: availableParallelism(),
    cpuModel,
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    os: `${os} (Linux ${release()})`,
    node: process.version,
    loadBefore: loadAverage(),
    servers: {},
  }
}
