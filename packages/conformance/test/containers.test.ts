import { type ChildProcess, spawn } from 'node:child_process'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { dockerConfigured, provisionServer, runningContainerCount } from '../src/index.js'

// Against a real engine: `scripts/docker/conformance.sh` runs this file with its private engine
// and the txbox-local images (CI), or on any machine with Docker. Without one it is skipped,
// and under TXBOX_REQUIRE_ALL=1 with a configured engine it must pass.
const docker = dockerConfigured() && process.env.TXBOX_TESTCONTAINERS !== '0'
const SKIP = 'no Docker engine is configured (DOCKER_HOST)'

const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.setTimeout(2_000)
    socket.once('connect', () => {
      // docker-proxy accepts and then closes when its container is gone: read the greeting of
      // a real server instead (PING answered by +PONG).
      socket.write('PING\r\n')
    })
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('close', () => resolve(false))
  })

const firstLine = (child: ChildProcess): Promise<string> =>
  new Promise((resolve, reject) => {
    let text = ''
    let errors = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      const end = text.indexOf('\n')
      if (end >= 0) resolve(text.slice(0, end))
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      errors += chunk.toString()
    })
    child.once('exit', (code) =>
      reject(new Error(`the child exited with ${code} before starting: ${errors}`)),
    )
  })

describe.skipIf(!docker)(`containers on a real engine${docker ? '' : ` (skipped: ${SKIP})`}`, () => {
  it('stops the container it started when the process gets SIGTERM, with Ryuk disabled', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/start-container-then-wait.mjs', import.meta.url))
    const child = spawn(process.execPath, [fixture], {
      env: { ...process.env, TESTCONTAINERS_RYUK_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const url = await firstLine(child)
    const port = Number(new URL(url).port)
    expect(await accepts(port)).toBe(true)
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    expect(await accepts(port)).toBe(false)
  }, 180_000)

  // testcontainers reads these settings once, when it is loaded: each case gets a process of its own.
  const notRunReason = async (env: Record<string, string | undefined>): Promise<string> => {
    const script =
      "const { provisionServer } = await import('../dist/index.js');" +
      "const found = await provisionServer('redis');" +
      "if ('stop' in found) await found.stop();" +
      'process.stdout.write(JSON.stringify(found))'
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('.', import.meta.url)),
      env: { ...process.env, TXBOX_REDIS_URL: '', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
    })
    await new Promise((resolve) => child.once('exit', resolve))
    const found = JSON.parse(out) as { notRun?: string }
    if (found.notRun === undefined) throw new Error(`a container was started: ${out}`)
    return found.notRun
  }

  it('names the image that is neither on the engine nor pullable', async () => {
    const reason = await notRunReason({
      TESTCONTAINERS_RYUK_DISABLED: 'true',
      TXBOX_REDIS_IMAGE: 'txbox-local/no-such-image:0',
    })
    expect(reason).toMatch(
      /the image txbox-local\/no-such-image:0 is not on the Docker engine and could not be pulled .*set TXBOX_REDIS_IMAGE/,
    )
  }, 120_000)

  it("names Ryuk's image when the reaper cannot start, and says how to go without it", async () => {
    const reason = await notRunReason({
      TESTCONTAINERS_RYUK_DISABLED: undefined,
      RYUK_CONTAINER_IMAGE: 'txbox-local/no-such-ryuk:0',
    })
    expect(reason).toMatch(/reaper \(Ryuk, image txbox-local\/no-such-ryuk:0\) could not start/)
    expect(reason).toMatch(/set TESTCONTAINERS_RYUK_DISABLED=true .* or set RYUK_CONTAINER_IMAGE/)
  }, 120_000)

  it('gives DynamoDB Local to the first case only once it answers a real request', async () => {
    const found = await provisionServer('dynamodb', { env: { ...process.env, TXBOX_DYNAMODB_URL: '' } })
    if (!('connection' in found)) throw new Error(found.notRun)
    try {
      expect(found.connection).toMatchObject({ source: 'testcontainers' })
      expect(found.connection.image).toBeTruthy()
      expect(runningContainerCount()).toBe(1)
      // At once, with no retry: the start waited for this.
      const response = await fetch(found.connection.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': 'DynamoDB_20120810.ListTables',
          authorization:
            'AWS4-HMAC-SHA256 Credential=txbox/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=txbox',
        },
        body: '{}',
      })
      expect(response.status).toBe(200)
      expect(await response.json()).toHaveProperty('TableNames')
    } finally {
      await found.stop()
    }
    expect(runningContainerCount()).toBe(0)
  }, 180_000)
})
