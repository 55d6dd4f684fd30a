import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  createPrometheusExporter,
  ManualClock,
  type OutboxEvent,
  OutboxRelay,
  type OutboxRelayOptions,
  SubjectMap,
  type SubjectMapOption,
  subjectPatternCovers,
  ValidationError,
} from '../src/index.js'
import { FakePublisher } from './helpers.js'

const event = (subject: string): OutboxEvent =>
  ({
    eventId: `id-${subject}`,
    subject,
    payload: '{}',
    headers: null,
    retryCount: 0,
  }) as unknown as OutboxEvent

const mapped = (map: SubjectMapOption, subject: string): string =>
  new SubjectMap(map).map(event(subject)).subject

const refusal = (map: unknown): string => {
  try {
    new SubjectMap(map as SubjectMapOption)
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return (error as Error).message.replace(/^\[txbox\] \[relay\] /, '')
  }
  throw new Error('expected the map to be refused')
}

const table: SubjectMapOption = [
  { from: 'user.created', to: 'production.users.created' },
  { from: 'order.*', to: 'production.orders.*' },
  { from: 'audit.>', to: 'prod.audit.>' },
  { from: 'billing.*.invoice.*', to: 'prod.*.invoices.*' },
  { from: 'legacy.*.>', to: 'v1.legacy' },
]

describe('SubjectMap', () => {
  it.each([
    ['user.created', 'production.users.created'],
    ['order.created', 'production.orders.created'],
    ['order.created.eu', 'order.created.eu'],
    ['order', 'order'],
    ['audit.login', 'prod.audit.login'],
    ['audit.login.failed.twice', 'prod.audit.login.failed.twice'],
    ['audit', 'audit'],
    ['billing.acme.invoice.42', 'prod.acme.invoices.42'],
    ['legacy.a.b.c', 'v1.legacy'],
    ['user.created.v2', 'user.created.v2'],
    ['users.created', 'users.created'],
  ])('maps %s to %s (exact, *, >, several *, unmatched unchanged)', (from, to) => {
    expect(mapped(table, from)).toBe(to)
  })

  it('takes the first entry that matches', () => {
    const map = [
      { from: 'order.created', to: 'special.created' },
      { from: 'order.*', to: 'general.*' },
    ]
    expect(mapped(map, 'order.created')).toBe('special.created')
    expect(mapped(map, 'order.deleted')).toBe('general.deleted')
  })

  it('keeps the order of an object written as subject -> subject', () => {
    const map = { 'order.created': 'special.created', 'order.*': 'general.*' }
    expect(mapped(map, 'order.created')).toBe('special.created')
    expect(mapped(map, 'order.paid')).toBe('general.paid')
  })

  it("treats '*' and '>' inside a longer token as ordinary characters, as NATS does", () => {
    const map = [{ from: 'v*2.x', to: 'mapped.x' }]
    expect(mapped(map, 'v*2.x')).toBe('mapped.x')
    expect(mapped(map, 'v12.x')).toBe('v12.x')
  })

  it('checks what a function answers on every call', () => {
    const map = new SubjectMap((subject, stored) => (stored.eventId === 'id-bad' ? 'a..b' : `eu.${subject}`))
    expect(map.map(event('orders.created'))).toEqual({ subject: 'eu.orders.created', entry: undefined })
    expect(() => map.map({ ...event('x'), eventId: 'id-bad' } as OutboxEvent)).toThrow(/empty token/)
    expect(() => new SubjectMap(() => 'orders.*').map(event('x'))).toThrow(/wildcard/)
  })

  it('refuses, naming the entry, what can never work', () => {
    expect(
      refusal([
        { from: 'a', to: 'b' },
        { from: 'orders..x', to: 'y' },
      ]),
    ).toBe(
      `subjectMap entry 2 ("orders..x" -> "y"): from has an empty token (a leading or trailing '.', or '..'); got "orders..x"`,
    )
    expect(refusal([{ from: 'orders.>.x', to: 'y' }])).toMatch(
      /^subjectMap entry 1 .*: from has '>' before its last token/,
    )
    expect(refusal([{ from: 'a', to: 'b c' }])).toMatch(
      /^subjectMap entry 1 \("a" -> "b c"\): to must not contain whitespace/,
    )
    expect(refusal([{ from: 'order.*', to: 'prod.>' }])).toMatch(/to ends in '>' but from has no '>'/)
    expect(refusal([{ from: 'a.*.*', to: 'b.*' }])).toMatch(/to has 1 '\*' and from has 2/)
    expect(refusal([{ from: 'a', to: 'x'.repeat(501) }])).toMatch(
      /to must be a non-empty string of at most 500/,
    )
    expect(refusal([{ from: 'a', to: '' }])).toMatch(/to must be a non-empty string/)
    expect(refusal([{ from: 'a' }])).toMatch(
      /^subjectMap entry 1 \("a" -> undefined\): to must be a non-empty string/,
    )
    expect(refusal([{ from: 'a', to: 'b', extra: 1 }])).toBe(
      'subjectMap entry 1 has unknown key "extra"; an entry is { from, to }',
    )
    expect(refusal(['a=b'])).toBe('subjectMap entry 1 must be an object { from, to }; got "a=b"')
    expect(refusal({ '1': 'one', 'a.*': 'b.*' })).toMatch(/key "1" is an integer/)
    expect(refusal('a=b')).toMatch(/^subjectMap must be a list of \{ from, to \}/)
  })

  it('refuses an entry that an earlier one hides', () => {
    expect(
      refusal([
        { from: 'order.*', to: 'general.*' },
        { from: 'order.created', to: 'special.created' },
      ]),
    ).toBe(
      'subjectMap entry 2 ("order.created" -> "special.created") can never match: subjectMap entry 1 ("order.*" -> "general.*") comes first and matches every subject it does (the first match wins); put the narrower entry first or remove it',
    )
    expect(
      refusal([
        { from: 'a.>', to: 'x.>' },
        { from: 'a.*', to: 'y.*' },
      ]),
    ).toMatch(/entry 2 .* can never match: .*entry 1/)
    expect(
      refusal([
        { from: 'a.b', to: 'x' },
        { from: 'a.b', to: 'y' },
      ]),
    ).toMatch(/entry 2 .* can never match/)
    // A narrower entry first is fine, and so is a wider one that does not cover it.
    expect(
      new SubjectMap([
        { from: 'a.*', to: 'y.*' },
        { from: 'a.>', to: 'x.>' },
      ]).entries,
    ).toHaveLength(2)
  })

  it('names the first target no stream subject covers', () => {
    const map = new SubjectMap(table)
    expect(map.uncoveredBy(['production.>', 'prod.>', 'v1.*'])).toBeUndefined()
    expect(map.uncoveredBy(['production.>', 'prod.*.*', 'v1.*'])).toBe(
      `subjectMap entry 3 ("audit.>" -> "prod.audit.>"): to is not covered by the stream's subjects "production.>", "prod.*.*", "v1.*", so JetStream would have no stream for it`,
    )
  })
})

describe('subjectPatternCovers', () => {
  it.each([
    ['orders.>', 'orders.created', true],
    ['orders.>', 'orders.*.created', true],
    ['orders.>', 'orders.>', true],
    ['orders.>', 'orders', false],
    ['orders.*', 'orders.created', true],
    ['orders.*', 'orders.*', true],
    ['orders.*', 'orders.>', false],
    ['orders.*', 'orders.a.b', false],
    ['orders.created', 'orders.*', false],
    ['>', 'anything.at.all', true],
    ['*.created', 'orders.created', true],
    ['a.b', 'a.b', true],
    ['a.b', 'a.c', false],
    ['a.b.c', 'a.b', false],
  ])('%s covers %s: %s', (outer, inner, expected) => {
    expect(subjectPatternCovers(outer, inner)).toBe(expected)
  })
})

describe('OutboxRelay with a subject map', () => {
  const setup = (options: Partial<OutboxRelayOptions>) => {
    const clock = new ManualClock()
    const store = createMemoryStore({ clock: clock.now })
    const publisher = new FakePublisher()
    const lines: { level: string; message: string; fields: Record<string, unknown> | undefined }[] = []
    const log =
      (level: string) =>
      (message: string, fields?: Record<string, unknown>): void => {
        lines.push({ level, message, fields })
      }
    const relay = new OutboxRelay({
      outbox: store.outbox,
      publisher,
      workerId: 'relay-map',
      clock: clock.now,
      claimRampUp: false,
      maxAttempts: 1,
      logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
      ...options,
    })
    return { store, publisher, relay, lines }
  }

  it('refuses a bad table when it is built, naming the entry', () => {
    expect(() => setup({ subjectMap: [{ from: 'a.*', to: 'b.>' }] })).toThrow(
      /^\[txbox\] \[relay\] subjectMap entry 1 \("a\.\*" -> "b\.>"\)/,
    )
  })

  it('publishes to the mapped subject, keeps the stored subject, and counts per entry', async () => {
    const { store, publisher, relay } = setup({ subjectMap: table })
    await store.outbox.findOrCreateMany([
      { eventId: 'u1', subject: 'user.created', payload: '1' },
      { eventId: 'o1', subject: 'order.paid', payload: '2' },
      { eventId: 'o2', subject: 'order.shipped', payload: '3' },
      { eventId: 'x1', subject: 'inventory.low', payload: '4' },
    ])
    expect(await relay.runOnce()).toBe(4)
    expect(Object.fromEntries(publisher.published.map((sent) => [sent.eventId, sent.subject]))).toEqual({
      u1: 'production.users.created',
      o1: 'production.orders.paid',
      o2: 'production.orders.shipped',
      x1: 'inventory.low',
    })
    for (const [id, subject] of [
      ['u1', 'user.created'],
      ['o1', 'order.paid'],
      ['x1', 'inventory.low'],
    ] as const) {
      const stored = await store.outbox.get(id)
      expect(stored?.subject).toBe(subject)
      expect(stored?.status).toBe('sent')
    }
    const metrics = await relay.metrics()
    expect(metrics.publishedByMapEntry).toEqual({
      'user.created -> production.users.created': 1,
      'order.* -> production.orders.*': 2,
      'audit.> -> prod.audit.>': 0,
      'billing.*.invoice.* -> prod.*.invoices.*': 0,
      'legacy.*.> -> v1.legacy': 0,
    })
    expect(metrics.published).toBe(4)
    const exporter = await createPrometheusExporter({ relay })
    const text = await exporter.metrics()
    expect(text).toContain(
      'txbox_relay_published_by_map_entry_total{worker_id="relay-map",entry="order.* -> production.orders.*"} 2',
    )
    expect(text).toContain(
      'txbox_relay_published_by_map_entry_total{worker_id="relay-map",entry="audit.> -> prod.audit.>"} 0',
    )
  })

  it('logs the mapped subject of a dead letter, and the stored event keeps its own', async () => {
    const { store, publisher, relay, lines } = setup({ subjectMap: table })
    publisher.outcome = () => Object.assign(new Error('no stream'), { reason: 'no-stream' })
    await store.outbox.findOrCreate({ eventId: 'o1', subject: 'order.paid', payload: '1' })
    await relay.runOnce()
    const dead = lines.find((line) => line.message === 'event dead-lettered')
    expect(dead?.fields).toMatchObject({
      eventId: 'o1',
      subject: 'production.orders.paid',
      reason: 'max-attempts',
    })
    const stored = await store.outbox.get('o1')
    expect(stored?.status).toBe('failed')
    expect(stored?.subject).toBe('order.paid')
  })

  it('names the mapped subject in the summary of failures that will be retried', async () => {
    const { store, publisher, relay, lines } = setup({ subjectMap: table, maxAttempts: 5 })
    publisher.outcome = () => Object.assign(new Error('no stream'), { reason: 'no-stream' })
    await store.outbox.findOrCreate({ eventId: 'a1', subject: 'audit.login', payload: '1' })
    await relay.runOnce()
    const summary = lines.find((line) => line.message.startsWith('publishes failed'))
    expect(summary?.fields).toMatchObject({ lastEventId: 'a1', lastSubject: 'prod.audit.login' })
  })

  it('dead-letters an event the mapping function cannot map, and publishes the rest', async () => {
    const { store, publisher, relay } = setup({
      subjectMap: (subject) => {
        if (subject === 'boom') throw new Error('no rule for boom')
        return subject === 'bad' ? 'bad.>' : `eu.${subject}`
      },
    })
    await store.outbox.findOrCreateMany([
      { eventId: 'ok', subject: 'orders.created', payload: '1' },
      { eventId: 'boom', subject: 'boom', payload: '2' },
      { eventId: 'bad', subject: 'bad', payload: '3' },
    ])
    await relay.runOnce()
    expect(publisher.published.map((sent) => `${sent.eventId}:${sent.subject}`)).toEqual([
      'ok:eu.orders.created',
    ])
    const boom = await store.outbox.get('boom')
    expect(boom?.status).toBe('failed')
    expect(boom?.errorMessage).toMatch(
      /^the subject map gave no subject NATS can publish to for "boom": no rule for boom/,
    )
    expect((await store.outbox.get('bad'))?.errorMessage).toMatch(/wildcard/)
    expect((await relay.metrics()).deadLettered).toEqual({ 'subject-map': 2 })
  })
})

const natsUrl = process.env.TXBOX_NATS_URL
describe.skipIf(!natsUrl && process.env.TXBOX_REQUIRE_ALL !== '1')(
  'OutboxRelay with a subject map on JetStream',
  () => {
    it('stores the message under the mapped subject, and a republish after a crash is verified as the same message', async () => {
      if (!natsUrl) throw new Error('TXBOX_REQUIRE_ALL=1 but TXBOX_NATS_URL is not set')
      const { connect } = await import('nats')
      const { createJetStreamPublisher, ensureStream } = await import('../src/nats/index.js')
      const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
      const stream = `TXBOX_MAP_${suffix.toUpperCase()}`
      const nc = await connect({ servers: natsUrl })
      const jsm = await nc.jetstreamManager()
      try {
        await ensureStream(jsm, { name: stream, subjects: [`mapped${suffix}.>`] })
        const clock = new ManualClock()
        const store = createMemoryStore({ clock: clock.now })
        const publisher = createJetStreamPublisher({ connection: nc })
        const subjectMap = [{ from: 'order.*', to: `mapped${suffix}.orders.*` }]
        await store.outbox.findOrCreate({
          eventId: `map-${suffix}`,
          subject: 'order.created',
          payload: '{"a":1}',
        })
        // A relay that died after publishing: the message is in the stream, the event not marked.
        const [claimed] = await store.outbox.claim({ limit: 1, leaseMs: 1_000, workerId: 'dead-relay' })
        await publisher.publish({ ...(claimed as OutboxEvent), subject: `mapped${suffix}.orders.created` })
        clock.advance(2_000)
        const relay = new OutboxRelay({
          outbox: store.outbox,
          publisher,
          subjectMap,
          clock: clock.now,
          claimRampUp: false,
          logger: { debug() {}, info() {}, warn() {}, error() {} },
        })
        expect(await relay.runOnce()).toBe(1)
        const counters = relay.counters()
        expect(counters).toMatchObject({
          published: 1,
          duplicates: 1,
          duplicateConflicts: 0,
          duplicatesUnverified: 0,
        })
        expect((await store.outbox.get(`map-${suffix}`))?.status).toBe('sent')
        const message = await jsm.streams.getMessage(stream, {
          last_by_subj: `mapped${suffix}.orders.created`,
        })
        expect(message.header.get('Nats-Msg-Id')).toBe(`map-${suffix}`)
        expect((await jsm.streams.info(stream)).state.messages).toBe(1)
      } finally {
        await jsm.streams.delete(stream).catch(() => false)
        await nc.close()
      }
    })
  },
)
