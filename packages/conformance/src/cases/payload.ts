import { type Capabilities, DEFAULT_MAX_EVENT_BYTES, natsMessageBytes } from '@txbox/core'
import { expectSame, expectTxboxError } from '../assertions.js'
import { defineCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'

const MiB = 1_048_576
/** Above this, building an event over the store's limit would exhaust a test's memory. */
const MAX_TESTABLE_LIMIT = 64 * MiB

/** The limit a store enforces: its declared `maxEventBytes`, else the contract's default (NATS's 1 MiB). */
const eventLimit = (capabilities: Capabilities): number =>
  capabilities.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES

/** A string of `bytes` UTF-8 bytes: 4-byte emoji, then ASCII for the rest. */
const textOfBytes = (bytes: number): string =>
  `${'🎉'.repeat(Math.floor(bytes / 8))}${'x'.repeat(bytes - 4 * Math.floor(bytes / 8))}`

/** Text that stores commonly alter: encodings, escapes, control characters, sizes. */
const samples = (capabilities: Capabilities): [string, string][] => {
  // Payload and headers both carry it: together they stay well under the store's limit.
  const big = Math.min(MiB, Math.floor(eventLimit(capabilities) * 0.4))
  const bigText = `${'{"k":"v"}'.repeat(Math.floor((big - 64) / 9))}🎉`
  return [
    ['empty string', ''],
    ['emoji', 'order shipped 🎉🚀👩‍👩‍👧‍👦'],
    ['astral characters', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱 🀄'],
    ['CJK and right-to-left', '注文 주문 طلب הזמנה'],
    ['combining marks', 'e\u0301 n\u0303 a\u030A'],
    ['quotes and backslashes', `"double" 'single' \`back\` \\ \\\\ \\n \\u0000 \\"`],
    ['control characters', 'tab\tnewline\ncarriage\rbell\u0007escape\u001b'],
    ['U+0001 and U+0002', '\u0001\u0002\u0001\u0001\u0002'],
    ['byte order mark and separators', '\uFEFFline\u2028para\u2029end\uFFFF'],
    ['JSON document', JSON.stringify({ id: 1, nested: { list: [1, 'two', null, true] }, text: 'a "quote"' })],
    ['trailing spaces', '  padded  '],
    [`large (${bigText.length} characters)`, bigText],
  ]
}

export const payloadCases = [
  defineCase({
    id: 'outbox.payload.fidelity',
    title: 'payload and headers round-trip exactly: emoji, astral, quotes, control characters, large text',
    async run({ store, capabilities }) {
      for (const [index, [label, text]] of samples(capabilities).entries()) {
        const eventId = `payload-${index}`
        const returned = await store.outbox.findOrCreate(
          outboxEvent(eventId, { payload: text, headers: text }),
        )
        expectSame(returned.payload === text, true, `${label}: findOrCreate returns the payload unchanged`)
        const stored = await store.oracle.outbox(eventId)
        expectSame(stored?.payload === text, true, `${label}: oracle: stored payload is exact`)
        expectSame(stored?.headers === text, true, `${label}: oracle: stored headers are exact`)
        const read = await store.outbox.get(eventId)
        expectSame(
          read?.payload === text && read.headers === text,
          true,
          `${label}: get returns payload and headers unchanged`,
        )
      }
      const claimed = await store.outbox.claim({ limit: 100, leaseMs: 60_000, workerId: 'w' })
      const expected = new Map(samples(capabilities).map(([, text], index) => [`payload-${index}`, text]))
      for (const event of claimed) {
        expectSame(
          event.payload === expected.get(event.eventId),
          true,
          `${event.eventId}: claim returns the payload unchanged`,
        )
      }
      const inboxText = samples(capabilities)[2]?.[1] ?? ''
      await store.inbox.findOrCreate(inboxEvent('inbox-payload', { payload: inboxText, headers: inboxText }))
      const storedInbox = await store.oracle.inbox('inbox-payload')
      expectSame(
        storedInbox?.payload === inboxText && storedInbox.headers === inboxText,
        true,
        'oracle: inbox payload exact',
      )
    },
  }),
  defineCase({
    id: 'outbox.payload.nul',
    title: 'U+0000 either round-trips exactly or is rejected with ValidationError, never altered',
    async run({ store }) {
      const text = 'before\u0000after\u0000'
      let returned: string | undefined
      try {
        returned = (await store.outbox.findOrCreate(outboxEvent('nul', { payload: text, headers: text })))
          .payload
      } catch (error) {
        expectSame(
          (error as { name?: string }).name,
          'ValidationError',
          'a store that cannot hold U+0000 rejects it clearly',
        )
        expectSame(await store.oracle.outbox('nul'), null, 'oracle: a rejected event is not stored')
        return
      }
      expectSame(returned === text, true, 'findOrCreate returns the NUL characters unchanged')
      const stored = await store.oracle.outbox('nul')
      expectSame(
        stored?.payload === text && stored.headers === text,
        true,
        'oracle: NUL characters stored exactly',
      )
      expectSame((await store.outbox.get('nul'))?.payload === text, true, 'get returns them unchanged')
    },
  }),
  defineCase({
    id: 'outbox.payload.too-large',
    title:
      'an event whose NATS message (payload + headers) is over maxEventBytes raises PayloadTooLargeError before any write',
    skipReason: (capabilities) =>
      eventLimit(capabilities) > MAX_TESTABLE_LIMIT
        ? `the store's limit (${eventLimit(capabilities)} bytes) is too large to build an event over it in a test`
        : undefined,
    async run({ store, capabilities }) {
      const limit = eventLimit(capabilities)
      // The payload alone fits; with the Nats-Msg-Id header block the message is one byte over.
      const overhead = natsMessageBytes({ eventId: 'huge', payload: '' })
      const huge = outboxEvent('huge', { payload: textOfBytes(limit + 1 - overhead) })
      expectSame(natsMessageBytes(huge), limit + 1, 'the test event is one byte over the limit')
      // Headers with a line break travel base64: 3 bytes become 4, so these fit only unencoded.
      const rawHeaders = `line\n${'h'.repeat(Math.floor(limit * 0.8))}`
      const wide = outboxEvent('wide-headers', { payload: '{}', headers: rawHeaders })
      expectSame(natsMessageBytes(wide) > limit, true, 'the base64-encoded headers are over the limit')
      for (const [label, event] of [
        ['payload one byte over with its header block', huge],
        ['headers over once base64-encoded', wide],
      ] as const) {
        await expectTxboxError(
          'PayloadTooLargeError',
          () => store.outbox.findOrCreate(event),
          `findOrCreate: ${label}`,
        )
        await expectTxboxError(
          'PayloadTooLargeError',
          () => store.outbox.findOrCreateMany([outboxEvent('small'), event]),
          `findOrCreateMany: ${label}`,
        )
      }
      expectSame(
        await store.oracle.outboxCount(),
        0,
        'oracle: nothing stored, not even the small event of the batch',
      )
    },
  }),
]
