import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'nats'
import { afterAll, describe, expect, it } from 'vitest'
import { openStore } from '../src/index.js'
import { freePort, NatsServerProcess, natsServerAvailable, ROOT, waitUntil } from './harness.js'

// The relay as a deployed service runs it (from the built bin, as the container does): a
// config file with a subject map, secrets from *_FILE variables, NATS with a password;
// /ready follows the store, NATS and the loop; SIGTERM drains and exits 0.

const required = process.env.TXBOX_REQUIRE_ALL === '1'
const available = natsServerAvailable()
const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-service-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const EVENTS = 60

const get = async (port: number, path: string): Promise<{ status: number; text: string }> => {
  const response = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: response.status, text: await response.text() }
}

describe.skipIf(!available && !required)(
  'txbox-relay as a service (built bin, --config, *_FILE secrets)',
  () => {
    it('drains a backlog to the mapped subjects, /ready follows NATS, SIGTERM exits 0', async () => {
      if (!available) throw new Error('TXBOX_REQUIRE_ALL=1 but nats-server cannot be run')
      const nats = new NatsServerProcess(await freePort(), join(dir, 'js'), ['-c', join(dir, 'nats.conf')])
      writeFileSync(join(dir, 'nats.conf'), 'authorization { user: relay, password: "n4ts-pw" }\n')
      await nats.start()
      const url = join(dir, 'outbox.db')
      const store = await openStore({ kind: 'sqlite', url, migrate: true })
      let relay: ChildProcess | undefined
      try {
        await store.outbox.findOrCreateMany(
          Array.from({ length: EVENTS }, (_, index) => ({
            eventId: `svc-${index}`,
            subject:
              index % 3 === 0 ? 'user.created' : index % 3 === 1 ? `order.n${index}` : 'audit.login.ok',
            payload: JSON.stringify({ index }),
          })),
        )
        const httpPort = await freePort()
        writeFileSync(
          join(dir, 'relay.yaml'),
          [
            'store: sqlite',
            `nats: nats://127.0.0.1:${nats.port}`,
            'nats-user: relay',
            'stream: SERVICE',
            'stream-subjects: [production.>, prod.>]',
            'subject-map:',
            '  - { from: user.created, to: production.users.created }',
            "  - { from: 'order.*', to: 'production.orders.*' }",
            "  - { from: 'audit.>', to: 'prod.audit.>' }",
            'batch-size: 16',
            'poll-interval-ms: 100',
            `http-port: ${httpPort}`,
            'log-level: info',
            '',
          ].join('\n'),
        )
        writeFileSync(join(dir, 'url'), `${url}\n`)
        writeFileSync(join(dir, 'nats-password'), 'n4ts-pw\n')
        const lines: string[] = []
        relay = spawn(
          process.execPath,
          ['packages/relay/bin/txbox-relay.js', '--config', join(dir, 'relay.yaml')],
          {
            cwd: ROOT,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: {
              PATH: process.env.PATH,
              TXBOX_RELAY_URL_FILE: join(dir, 'url'),
              TXBOX_RELAY_NATS_PASSWORD_FILE: join(dir, 'nats-password'),
              TXBOX_RELAY_WORKER_ID: 'relay-service-test',
            },
          },
        )
        relay.stdout?.on('data', (chunk: Buffer) => lines.push(chunk.toString()))
        relay.stderr?.on('data', (chunk: Buffer) => lines.push(chunk.toString()))
        const exited = new Promise<number | null>((resolve) => relay?.once('exit', (code) => resolve(code)))
        const log = () => lines.join('')

        const ready = () =>
          get(httpPort, '/ready').then(
            (answer) => answer.status === 200,
            () => false,
          )
        expect(await waitUntil(ready, 30_000, 100), log()).toBe(true)
        const drained = await waitUntil(
          async () => (await store.outbox.getCountByStatus()).sent === EVENTS,
          30_000,
          100,
        )
        expect(drained, log()).toBe(true)

        const nc = await connect({ servers: nats.url, user: 'relay', pass: 'n4ts-pw' })
        try {
          const jsm = await nc.jetstreamManager()
          const info = await jsm.streams.info('SERVICE', { subjects_filter: '>' })
          expect(info.state.messages).toBe(EVENTS)
          expect(info.state.subjects?.['production.users.created']).toBe(EVENTS / 3)
          expect(info.state.subjects?.['production.orders.n1']).toBe(1)
          expect(info.state.subjects?.['prod.audit.login.ok']).toBe(EVENTS / 3)
        } finally {
          await nc.close()
        }
        // The stored events keep their own subjects.
        expect((await store.outbox.get('svc-0'))?.subject).toBe('user.created')
        const metrics = await get(httpPort, '/metrics')
        expect(metrics.text).toContain(
          `txbox_relay_published_by_map_entry_total{worker_id="relay-service-test",entry="user.created -> production.users.created"} ${EVENTS / 3}`,
        )
        expect(log()).not.toContain('n4ts-pw')

        // Readiness follows NATS; liveness does not (a restart would not bring NATS back).
        await nats.stop()
        const notReady = await waitUntil(
          async () => {
            const answer = await get(httpPort, '/ready')
            return answer.status === 503 && answer.text.includes('NATS')
          },
          20_000,
          100,
        )
        expect(notReady, log()).toBe(true)
        expect((await get(httpPort, '/live')).status).toBe(200)
        await nats.start()
        expect(await waitUntil(ready, 30_000, 100), log()).toBe(true)

        relay.kill('SIGTERM')
        expect(await exited, log()).toBe(0)
        expect(log()).toContain('"msg":"relay stopped"')
      } finally {
        if (relay?.exitCode === null) relay.kill('SIGKILL')
        await store.close()
        await nats.stop()
      }
    }, 120_000)
  },
)
