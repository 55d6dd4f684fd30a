import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import {
  CONFIG_FILE_KEYS,
  ENV_VARIABLES,
  FLAG_NAMES,
  listeningPort,
  parseCli,
  RelayStatus,
  serveHttp,
} from '../src/index.js'
import { ROOT } from './harness.js'

// deploy/kubernetes/ must keep working with the relay as it is: the manifests parse, every
// flag, config key and TXBOX_RELAY_* variable they use exists, the config they assemble
// passes the relay's own checks, the probes hit real endpoints, the grace period covers a
// drain, and the pod runs as the image's user.

const DIR = join(ROOT, 'deploy/kubernetes')
const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-manifests-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

type Manifest = { kind: string; metadata: { name: string }; [key: string]: unknown }
type Container = {
  args?: string[]
  command?: string[]
  env?: { name: string; value?: string; valueFrom?: unknown }[]
  volumeMounts?: { name: string; mountPath: string }[]
  livenessProbe?: { httpGet?: { path: string; port: string | number } }
  readinessProbe?: { httpGet?: { path: string; port: string | number } }
  ports?: { name?: string; containerPort: number }[]
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
}
type PodSpec = {
  terminationGracePeriodSeconds?: number
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number }
  containers: Container[]
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[]
}

const manifests: Manifest[] = readdirSync(DIR)
  .filter((file) => file.endsWith('.yaml'))
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.map(String).join('; ')}`)
      return document.toJS() as Manifest
    }),
  )
const find = (kind: string): Manifest => {
  const found = manifests.find((manifest) => manifest.kind === kind)
  if (!found) throw new Error(`no ${kind} in deploy/kubernetes`)
  return found
}
const deployment = find('Deployment') as Manifest & {
  spec: { replicas: number; template: { spec: PodSpec } }
}
const pod = deployment.spec.template.spec
const relay = pod.containers[0] as Container
const configMap = find('ConfigMap') as Manifest & { data: Record<string, string> }
const secret = find('Secret') as Manifest & { stringData: Record<string, string> }
const env = Object.fromEntries((relay.env ?? []).map((entry) => [entry.name, entry.value]))

/** The file a mounted ConfigMap or Secret key appears as, by volume. */
const mounted = (path: string): { volume: string; key: string } => {
  const mount = (relay.volumeMounts ?? []).find((candidate) => path.startsWith(`${candidate.mountPath}/`))
  if (!mount) throw new Error(`${path} is on no mounted volume`)
  return { volume: mount.name, key: path.slice(mount.mountPath.length + 1) }
}
const volume = (name: string) => (pod.volumes ?? []).find((candidate) => candidate.name === name)

const relayConfig = parseYaml(configMap.data['relay.yaml'] as string) as Record<string, unknown>

describe('deploy/kubernetes', () => {
  it('parses: a Deployment of 3 relays, its ConfigMap and Secret, all referenced by the kustomization', () => {
    expect(deployment.spec.replicas).toBe(3)
    const kustomization = parseYaml(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as {
      resources: string[]
    }
    expect(kustomization.resources.sort()).toEqual(
      readdirSync(DIR)
        .filter((file) => file.endsWith('.yaml') && file !== 'kustomization.yaml')
        .sort(),
    )
  })

  it('uses only flags, config keys and TXBOX_RELAY_* variables the relay has', () => {
    const flags = [...(relay.command ?? []), ...(relay.args ?? [])].filter((arg) => arg.startsWith('--'))
    for (const flag of flags) expect(FLAG_NAMES, flag).toContain(flag.slice(2).split('=')[0])
    for (const key of Object.keys(relayConfig))
      expect(CONFIG_FILE_KEYS, `relay.yaml key ${key}`).toContain(key)
    const variables = Object.keys(env).filter((name) => name.startsWith('TXBOX_RELAY_'))
    expect(variables.length).toBeGreaterThan(0)
    for (const name of variables) expect(ENV_VARIABLES, name).toContain(name)
  })

  it('assembles a configuration the relay accepts: the ConfigMap as --config, the Secret as *_FILE files', () => {
    const config = mounted(env.TXBOX_RELAY_CONFIG as string)
    expect(volume(config.volume)?.configMap?.name).toBe(configMap.metadata.name)
    writeFileSync(join(dir, 'relay.yaml'), configMap.data[config.key] as string)
    const variables: Record<string, string> = { TXBOX_RELAY_CONFIG: join(dir, 'relay.yaml') }
    for (const [name, value] of Object.entries(env)) {
      if (!name.endsWith('_FILE') || value === undefined) continue
      const file = mounted(value)
      expect(volume(file.volume)?.secret?.secretName, name).toBe(secret.metadata.name)
      expect(Object.keys(secret.stringData), `${name}: key ${file.key}`).toContain(file.key)
      writeFileSync(join(dir, file.key), secret.stringData[file.key] as string)
      variables[name] = join(dir, file.key)
    }
    for (const [name, value] of Object.entries(env))
      if (!name.endsWith('_FILE') && name !== 'TXBOX_RELAY_CONFIG' && value !== undefined)
        variables[name] = value
    const request = parseCli([], variables)
    if (!('run' in request)) throw new Error('expected a configuration')
    expect(request.run.store.kind).toBe('postgres')
    expect(request.run.natsAuth.method).toBe('user-password')
    expect(request.run.subjectMap?.length).toBeGreaterThan(0)
    expect(request.run.httpPort).toBe(relay.ports?.find((port) => port.name === 'http')?.containerPort)
  })

  it('probes endpoints the relay serves: liveness /live, readiness /ready', async () => {
    expect(relay.livenessProbe?.httpGet?.path).toBe('/live')
    expect(relay.readinessProbe?.httpGet?.path).toBe('/ready')
    const server = await serveHttp(new RelayStatus(), 0, { warn: () => {}, error: () => {} })
    try {
      const port = listeningPort(server)
      for (const probe of [relay.livenessProbe, relay.readinessProbe]) {
        const response = await fetch(`http://127.0.0.1:${port}${probe?.httpGet?.path}`)
        expect(response.status, probe?.httpGet?.path).not.toBe(404)
      }
      // Before the relay runs: alive, not ready.
      expect((await fetch(`http://127.0.0.1:${port}/live`)).status).toBe(200)
      expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(503)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('gives a stop longer than the worst drain: ceil(batches x batch / concurrency) publish timeouts', () => {
    const publishTimeoutMs = Number(relayConfig['publish-timeout-ms'] ?? 5_000)
    const held = Number(relayConfig['batches-in-flight'] ?? 2) * Number(relayConfig['batch-size'] ?? 100)
    const rounds = Math.ceil(held / Number(relayConfig.concurrency ?? 32))
    expect(pod.terminationGracePeriodSeconds).toBeDefined()
    expect((pod.terminationGracePeriodSeconds as number) * 1_000).toBeGreaterThan(rounds * publishTimeoutMs)
  })

  it("runs as the image's non-root user, with a memory limit above the request", () => {
    const dockerfile = readFileSync(join(ROOT, 'packages/relay/Dockerfile'), 'utf8')
    const user = /^USER (\d+):(\d+)$/m.exec(dockerfile)
    expect(user?.[1]).toBe(String(pod.securityContext?.runAsUser))
    expect(pod.securityContext?.runAsNonRoot).toBe(true)
    const mebibytes = (value: string | undefined) => Number(/^(\d+)Mi$/.exec(value ?? '')?.[1])
    const request = mebibytes(relay.resources?.requests?.memory)
    const limit = mebibytes(relay.resources?.limits?.memory)
    expect(request).toBeGreaterThan(0)
    expect(limit).toBeGreaterThan(request)
    // The HEALTHCHECK of the image asks /health on the port the Deployment sets.
    expect(readFileSync(join(ROOT, 'packages/relay/docker/healthcheck.mjs'), 'utf8')).toContain('/health')
    expect(dockerfile).toMatch(/^HEALTHCHECK .*healthcheck\.mjs/m)
  })
})
