import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { withStream } from './relay-e2e.js'
import type { MemoryResult } from './results.js'
import { makeEvents } from './scenarios.js'
import { openSqlite } from './stores/sqlite-file.js'

interface ChildMessage {
  type: 'ready' | 'progress' | 'done'
  published?: number
  rssKb: number
  hwmKb?: number
}

const mb = (kb: number): number => Math.round((kb / 1024) * 10) / 10

/** Fills a SQLite outbox with `events` events, in one transaction of 500-row INSERTs. */
const fill = async (file: string, prefix: string, events: number, subject: string): Promise<void> => {
  const connection = openSqlite(file, prefix)
  const db = connection.client
  try {
    await connection.store.migrate()
    const rows = 500
    const insert = db.prepare(
      `INSERT INTO ${prefix}outbox (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at) VALUES ${Array.from(
        { length: rows },
        () => "(?, ?, ?, NULL, 'pending', ?, 0, ?)",
      ).join(', ')}`,
    )
    const all = makeEvents('mem', events, subject)
    db.transaction(() => {
      for (let i = 0; i < all.length; i += rows) {
        const now = Date.now()
        const params: unknown[] = []
        for (const e of all.slice(i, i + rows)) params.push(e.eventId, e.subject, e.payload, now, now)
        insert.run(...params)
      }
    })()
  } finally {
    await connection.close()
  }
}

/**
 * Peak RSS of a relay process (a child running one OutboxRelay) while it drains a pre-filled
 * SQLite outbox, with the RSS at 0/25/50/75/100% drained to show whether it stays flat.
 */
export const runMemory = async (quick: boolean, log: (line: string) => void): Promise<MemoryResult> => {
  const events = quick ? 10_000 : 100_000
  const url = process.env.TXBOX_NATS_URL
  if (!url) return { store: 'sqlite', events, notRun: 'TXBOX_NATS_URL is not set' }
  const dir = mkdtempSync(join(tmpdir(), 'txbox-bench-mem-'))
  try {
    return await withStream(url, async (stream) => {
      const file = join(dir, 'memory.db')
      const prefix = 'mem_'
      await fill(file, prefix, events, stream.subject)
      log(`memory: ${events} events in ${file}; starting the relay child`)
      const child = fork(
        new URL('./relay-child.js', import.meta.url),
        [file, prefix, url, stream.name, String(events)],
        {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      )
      const marks = [0, 25, 50, 75, 100]
      const rssAt: Array<{ percent: number; rssMb: number }> = []
      let baseline = 0
      let started = 0
      let seconds = 0
      let peakKb = 0
      await new Promise<void>((resolve, reject) => {
        child.on('message', (raw) => {
          const message = raw as ChildMessage
          peakKb = Math.max(peakKb, message.rssKb)
          if (message.type === 'ready') {
            baseline = message.rssKb
            started = performance.now()
            return
          }
          const published = message.published ?? events
          while (marks.length > 0 && published >= ((marks[0] as number) / 100) * events) {
            rssAt.push({ percent: marks.shift() as number, rssMb: mb(message.rssKb) })
          }
          if (message.type === 'done') {
            seconds = (performance.now() - started) / 1000
            peakKb = Math.max(peakKb, message.hwmKb ?? 0)
            resolve()
          }
        })
        child.on('exit', (code) => {
          if (code !== 0) reject(new Error(`the relay child exited with code ${code}`))
          else resolve()
        })
      })
      const result: MemoryResult = {
        store: 'sqlite',
        events,
        peakRssMb: mb(peakKb),
        baselineRssMb: mb(baseline),
        rssAt,
        seconds: Math.round(seconds * 10) / 10,
      }
      log(`memory: peak ${result.peakRssMb} MB; ${rssAt.map((m) => `${m.percent}%=${m.rssMb}`).join(' ')}`)
      return result
    })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    log(`memory failed: ${message}`)
    return { store: 'sqlite', events, notRun: `failed: ${message.slice(0, 160)}` }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
