import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { POLL_INTERVAL_MS, RAW_BATCH, type RelaySide, withStream } from './relay-e2e.js'
import { RelayProcesses } from './relay-processes.js'
import type { MemoryResult } from './results.js'
import { makeEvents } from './scenarios.js'
import { openSqlite } from './stores/sqlite-file.js'

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
 * Peak RSS of a relay process (one child running txbox's OutboxRelay at its defaults, then
 * one running the raw relay) while it drains a pre-filled SQLite outbox, with the RSS at
 * 0/25/50/75/100% drained to show whether it stays flat.
 */
export const runMemory = async (quick: boolean, log: (line: string) => void): Promise<MemoryResult[]> => {
  const results: MemoryResult[] = []
  for (const relay of ['txbox', 'raw'] as const) results.push(await memoryOf(relay, quick, log))
  return results
}

const memoryOf = async (
  relay: RelaySide,
  quick: boolean,
  log: (line: string) => void,
): Promise<MemoryResult> => {
  const events = quick ? 10_000 : 300_000
  const url = process.env.TXBOX_NATS_URL
  if (!url) return { store: 'sqlite', relay, events, notRun: 'TXBOX_NATS_URL is not set' }
  const dir = mkdtempSync(join(tmpdir(), 'txbox-bench-mem-'))
  let processes: RelayProcesses | undefined
  try {
    return await withStream(url, async (stream) => {
      const file = join(dir, 'memory.db')
      const prefix = 'mem_'
      await fill(file, prefix, events, stream.subject)
      log(`memory (${relay}): ${events} events in ${file}; starting the relay process`)
      const marks = [0, 25, 50, 75, 100]
      const rssAt: Array<{ percent: number; rssMb: number }> = []
      let baseline = 0
      let peakKb = 0
      processes = await RelayProcesses.launch(
        [
          {
            endpoint: { store: 'sqlite', file, prefix },
            relay,
            natsUrl: url,
            workerId: `memory-${relay}`,
            batchSize: relay === 'raw' ? RAW_BATCH : undefined,
            concurrency: undefined,
            batchesInFlight: undefined,
            maxBatchBytes: undefined,
            pollIntervalMs: POLL_INTERVAL_MS,
            reportEveryMs: 100,
            rss: true,
          },
        ],
        (message) => {
          peakKb = Math.max(peakKb, message.rssKb)
          if (message.type === 'ready') {
            baseline = message.rssKb
            return
          }
          const published = message.type === 'done' ? events : message.published
          while (marks.length > 0 && published >= ((marks[0] as number) / 100) * events)
            rssAt.push({ percent: marks.shift() as number, rssMb: mb(message.rssKb) })
        },
      )
      const started = performance.now()
      processes.start()
      await processes.waitForPublished(events, 600_000, 20)
      const seconds = (performance.now() - started) / 1000
      const [stopped] = await processes.stop()
      processes = undefined
      peakKb = Math.max(peakKb, stopped?.hwmKb ?? 0)
      const result: MemoryResult = {
        store: 'sqlite',
        relay,
        events,
        peakRssMb: mb(peakKb),
        baselineRssMb: mb(baseline),
        rssAt,
        seconds: Math.round(seconds * 10) / 10,
      }
      log(
        `memory (${relay}): peak ${result.peakRssMb} MB; ${rssAt.map((m) => `${m.percent}%=${m.rssMb}`).join(' ')}; ${result.seconds} s`,
      )
      return result
    })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    log(`memory (${relay}) failed: ${message}`)
    return { store: 'sqlite', relay, events, notRun: `failed: ${message.slice(0, 160)}` }
  } finally {
    processes?.kill()
    rmSync(dir, { recursive: true, force: true })
  }
}
