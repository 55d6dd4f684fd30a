import type { InboxClaimResult, InboxRepository, OutboxRepository } from '@txbox/core'
import { expectEqual, expectSame } from '../assertions.js'
import { type CaseContext, defineCase, skipCase } from '../case.js'
import { chunk, inboxEvent, outboxEvents } from '../events.js'

/**
 * Claims raced across connections: the fixture and peers (second instances of the adapter on
 * the same namespace, each over its own connection, as other processes would be). A store
 * that serializes claims inside one client (a mutex, a per-instance cache, one connection's
 * ordering) passes the in-process cases and fails these.
 */

/** The skip reason of a target without `peer()`: its claim area is then not certified. */
export const NO_PEER_REASON = 'the target offers no peer() (second connection)'

/** Peers opened beside the fixture: four connections, two claimers on each. */
const PEERS = 3
const CLAIMERS = 8
/**
 * Enough for every connection to claim many times, few enough for a slow store: FerretDB
 * scans per query and makes the losers of a race retry, so its time grows faster than N.
 * Measured on a loaded 2-core machine: 120 events take 5-8 s on FerretDB 1.24 and 4-6 s on
 * DynamoDB Local (400 took 75 s on FerretDB), under 2 s on the SQL stores and Redis.
 */
const EVENTS = 120
/** Small batches: more claims, so more chances for two connections to meet on one row. */
const LIMIT = 10
/** New inbox messages, each claimed by every claimer at once (FerretDB: about 0.5 s each). */
const INBOX_ROUNDS = 10
/** How many ids are mentioned in a failed check (the count says how many there were). */
const SHOWN = 5

interface Connection {
  readonly outbox: OutboxRepository
  readonly inbox: InboxRepository
}

/** The fixture and {@link PEERS} peers, or the case is skipped. */
const connections = async (context: CaseContext): Promise<Connection[]> => {
  const opened: Connection[] = [context.store]
  for (let index = 0; index < PEERS; index++) {
    const peer = await context.openPeer()
    if (peer === undefined) return skipCase(NO_PEER_REASON)
    opened.push(peer)
  }
  return opened
}

/** `label: none` when `items` is empty, else the count and the first few, for one check. */
const listed = (items: readonly string[]): string =>
  items.length === 0 ? 'none' : `${items.length}: ${items.slice(0, SHOWN).join(', ')}`

export const concurrencyCases = [
  defineCase({
    id: 'outbox.claim.disjoint-across-connections',
    title: `${CLAIMERS} claimers over the fixture and ${PEERS} peers (own connections) drain ${EVENTS} events: each claimed exactly once, none lost`,
    async run(context) {
      const { store } = context
      const all = await connections(context)
      const events = outboxEvents(EVENTS, 'across')
      const ids = new Set(events.map((event) => event.eventId))
      // Enqueued through every connection in turn: an event written by one is claimed by any.
      for (const [index, batch] of chunk(events, 50).entries())
        await (all[index % all.length] as Connection).outbox.findOrCreateMany(batch)
      // Every connection is open and sees every event before the race starts.
      for (const [index, connection] of all.entries())
        expectSame(
          (await connection.outbox.getCountByStatus()).pending,
          EVENTS,
          `connection ${index} sees every event pending before the claims`,
        )

      const owner = new Map<string, string>()
      const twice: string[] = []
      const strangers: string[] = []
      const misnamed: string[] = []
      const worker = async (index: number) => {
        const connection = all[index % all.length] as Connection
        const workerId = `worker-${index}`
        for (;;) {
          const claimed = await connection.outbox.claim({ limit: LIMIT, leaseMs: 600_000, workerId })
          if (claimed.length === 0) return
          for (const event of claimed) {
            if (!ids.has(event.eventId)) strangers.push(event.eventId)
            if (event.claimedBy !== workerId || event.status !== 'publishing')
              misnamed.push(`${event.eventId} (${event.status}, ${String(event.claimedBy)} for ${workerId})`)
            const first = owner.get(event.eventId)
            if (first === undefined) owner.set(event.eventId, workerId)
            else twice.push(`${event.eventId} (${first} and ${workerId})`)
          }
        }
      }
      await Promise.all(Array.from({ length: CLAIMERS }, (_, index) => worker(index)))

      expectSame(listed(twice), 'none', 'events claimed twice across connections')
      expectSame(listed(strangers), 'none', 'claimed ids that were never enqueued')
      expectSame(listed(misnamed), 'none', 'claimed events not publishing under their own worker')
      const lost = [...ids].filter((id) => !owner.has(id))
      expectSame(listed(lost), 'none', 'events no claimer got (lost)')

      expectSame(await store.oracle.outboxCount(), EVENTS, 'oracle: exactly the enqueued rows are stored')
      const disagree: string[] = []
      for (const batch of chunk([...ids], 25))
        await Promise.all(
          batch.map(async (eventId) => {
            const stored = await store.oracle.outbox(eventId)
            if (stored?.status !== 'publishing' || stored.claimedBy !== owner.get(eventId))
              disagree.push(
                `${eventId} (${stored?.status ?? 'missing'}, held by ${String(stored?.claimedBy)}, returned to ${String(owner.get(eventId))})`,
              )
          }),
        )
      expectSame(
        listed(disagree),
        'none',
        'oracle: rows not publishing under the worker they were returned to',
      )
    },
  }),
  defineCase({
    id: 'inbox.claim.exactly-one-across-connections',
    title: `${CLAIMERS} concurrent claims of a new message over the fixture and ${PEERS} peers, ${INBOX_ROUNDS} times: exactly one may process it, every delivery counted`,
    async run(context) {
      const { store } = context
      const all = await connections(context)
      for (const connection of all) await connection.inbox.getCountByStatus()

      const problems: string[] = []
      for (let round = 0; round < INBOX_ROUNDS; round++) {
        const eventId = `race-${round}`
        // One JetStream message redelivered to every consumer: the same id at the same position.
        const message = inboxEvent(eventId, { stream: 'ORDERS', streamSeq: round + 1 })
        const results: InboxClaimResult[] = await Promise.all(
          Array.from({ length: CLAIMERS }, (_, index) =>
            (all[index % all.length] as Connection).inbox.claim(message, {
              leaseMs: 600_000,
              workerId: `worker-${index}`,
            }),
          ),
        )
        const winners = results.flatMap((result, index) => (result.shouldProcess ? [index] : []))
        if (winners.length !== 1)
          problems.push(`${eventId}: ${winners.length} claims may process it (workers ${winners.join(', ')})`)
        const others = results.filter((result) => result.event.eventId !== eventId)
        if (others.length > 0) problems.push(`${eventId}: ${others.length} claims returned another event`)
        const winner = winners.length === 1 ? `worker-${winners[0]}` : undefined
        const returned = winners.length === 1 ? results[winners[0] as number]?.event.claimedBy : winner
        if (returned !== winner)
          problems.push(`${eventId}: the winner's event names ${String(returned)}, not ${String(winner)}`)
        const stored = await store.oracle.inbox(eventId)
        if (stored === null) problems.push(`${eventId}: oracle: not stored`)
        else {
          if (stored.deliveries !== CLAIMERS)
            problems.push(`${eventId}: oracle: ${stored.deliveries} deliveries, not ${CLAIMERS}`)
          if (stored.status !== 'processing')
            problems.push(`${eventId}: oracle: ${stored.status}, not processing`)
          if (winner !== undefined && stored.claimedBy !== winner)
            problems.push(`${eventId}: oracle: held by ${String(stored.claimedBy)}, not the winner ${winner}`)
        }
      }
      expectEqual(problems, [], 'every message has exactly one claim that may process it')
      expectSame(await store.oracle.inboxCount(), INBOX_ROUNDS, 'oracle: one row per message')
    },
  }),
]
