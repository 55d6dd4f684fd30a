import { describe, expect, expectTypeOf, it } from 'vitest'
import { createMemoryStore, InboxProcessor, jsonPayload, ValidationError } from '../src/index.js'
import { FakeSource, message } from './helpers.js'

interface Order {
  orderId: string
  total: number
  lines: { sku: string; quantity: number }[]
  note: string | null
}

const OrderCreated = jsonPayload<Order>({ name: 'OrderCreated' })
const order: Order = { orderId: 'o-1', total: 99.5, lines: [{ sku: 'a', quantity: 2 }], note: null }

const refusal = (value: unknown): string => {
  try {
    OrderCreated.encode(value as Order)
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return (error as Error).message
  }
  throw new Error(`encode accepted ${String(value)}`)
}

describe('jsonPayload', () => {
  it('round-trips through the outbox and into a handler, typed', async () => {
    const store = createMemoryStore()
    const tx = store.begin()
    await store.outbox.findOrCreate(
      OrderCreated.event({ eventId: 'order-1', subject: 'orders.created', payload: order }),
      { tx },
    )
    tx.commit()
    const stored = await store.outbox.get('order-1')
    expect(stored?.payload).toBe(JSON.stringify(order))

    const decoded: Order[] = []
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: new FakeSource(),
      handler: async ({ event }) => {
        const value = OrderCreated.decode(event)
        expectTypeOf(value).toEqualTypeOf<Order>()
        decoded.push(value)
      },
    })
    await processor.handle(message({ eventId: 'order-1', payload: stored?.payload ?? '' }))
    expect(decoded).toEqual([order])
  })

  it('keeps headers and availableAt, and encodes only the payload', () => {
    const availableAt = new Date('2030-01-01T00:00:00.000Z')
    expect(
      OrderCreated.event({ eventId: 'e', subject: 's', payload: order, headers: '{"a":"b"}', availableAt }),
    ).toEqual({
      eventId: 'e',
      subject: 's',
      payload: JSON.stringify(order),
      headers: '{"a":"b"}',
      availableAt,
    })
  })

  it('names the event id when a payload is not JSON', () => {
    let thrown: unknown
    try {
      OrderCreated.decode({ eventId: 'evt-42', payload: '{"orderId": ' })
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ValidationError)
    expect((thrown as Error).message).toMatch(
      /^\[txbox\] \[json-payload\] OrderCreated: the payload of event "evt-42" is not valid JSON/,
    )
    expect((thrown as Error).cause).toBeInstanceOf(SyntaxError)
  })

  it('checks decoded values with validate, naming the event id on refusal', () => {
    const Checked = jsonPayload<{ id: string }>({
      name: 'Checked',
      validate: (value) => {
        if (typeof value !== 'object' || value === null || typeof (value as { id?: unknown }).id !== 'string')
          throw new Error('id must be a string')
        return value as { id: string }
      },
    })
    expect(Checked.decode({ eventId: 'ok', payload: '{"id":"x"}' })).toEqual({ id: 'x' })
    expect(() => Checked.decode({ eventId: 'bad-1', payload: '{"id":7}' })).toThrow(
      /Checked: the payload of event "bad-1" was refused by validate: id must be a string/,
    )
  })

  it('refuses a payload string passed instead of the event', () => {
    expect(() => OrderCreated.decode('{"orderId":"o"}' as never)).toThrow(ValidationError)
  })

  it('refuses at encode every value JSON would drop or change, naming where it is', () => {
    expect(refusal(undefined)).toMatch(/the value is undefined/)
    expect(refusal({ ...order, note: undefined })).toMatch(/the value\.note is undefined.*use null/)
    expect(refusal({ ...order, total: Number.NaN })).toMatch(/the value\.total is NaN.*become null/)
    expect(refusal({ ...order, total: Number.POSITIVE_INFINITY })).toMatch(/the value\.total is Infinity/)
    expect(refusal({ ...order, total: 10n })).toMatch(/the value\.total is a BigInt.*toString/)
    expect(refusal({ ...order, at: new Date(0) })).toMatch(/the value\.at is a Date.*toISOString/)
    expect(refusal({ ...order, tags: new Set(['a']) })).toMatch(/the value\.tags is a Set/)
    expect(refusal({ ...order, byId: new Map() })).toMatch(/the value\.byId is a Map/)
    expect(refusal({ ...order, total: () => 1 })).toMatch(/the value\.total is a function/)
    expect(refusal({ ...order, lines: [{ sku: Symbol('s'), quantity: 1 }] })).toMatch(
      /the value\.lines\[0\]\.sku is a symbol/,
    )
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    expect(refusal({ ...order, lines: [, { sku: 'a', quantity: 1 }] })).toMatch(
      /the value\.lines is a sparse array/,
    )
    expect(refusal({ ...order, [Symbol('k')]: 1 })).toMatch(/symbol keys/)
    expect(refusal({ ...order, 'odd key': undefined })).toMatch(/the value\["odd key"\] is undefined/)
    class Money {
      amount = 1
    }
    expect(refusal({ ...order, price: new Money() })).toMatch(/the value\.price is a Money/)
    const cyclic: Record<string, unknown> = { ...order }
    cyclic.self = cyclic
    expect(refusal(cyclic)).toMatch(/the value\.self is a reference to one of its own ancestors/)
    const hidden = { ...order }
    Object.defineProperty(hidden, 'secret', { value: 1, enumerable: false })
    expect(refusal(hidden)).toMatch(/non-enumerable/)
    expect(refusal(Object.assign([1, 2], { extra: true }))).toMatch(/an array with extra properties/)
  })

  it('accepts shared (not cyclic) references, null prototypes, and documents -0 -> 0', () => {
    const shared = { sku: 'a', quantity: 1 }
    expect(JSON.parse(OrderCreated.encode({ ...order, lines: [shared, shared] })).lines).toEqual([
      shared,
      shared,
    ])
    const bare = Object.assign(Object.create(null) as object, { orderId: 'o' })
    expect(jsonPayload<unknown>().encode(bare)).toBe('{"orderId":"o"}')
    // The one change JSON makes that encode lets through: negative zero is written as 0.
    expect(Object.is(JSON.parse(jsonPayload<number>().encode(-0)), 0)).toBe(true)
  })

  it('rejects invalid options', () => {
    expect(() => jsonPayload({ validate: 'yes' as never })).toThrow(/validate must be a function/)
  })
})
