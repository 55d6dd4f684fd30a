import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createJsonLogger,
  createMemoryStore,
  InboxProcessor,
  OutboxRelay,
  resolveLogger,
  silentLogger,
  ValidationError,
} from '../src/index.js'
import { FakePublisher, FakeSource, message } from './helpers.js'

/** Captures what is written to process.stderr, as parsed JSON lines. */
const captureStderr = () => {
  const lines: string[] = []
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString())
    return true
  })
  return {
    records: () =>
      lines
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    raw: () => lines.join(''),
    restore: () => spy.mockRestore(),
  }
}

/** A logger shaped like pino: fields first, message second, methods that read `this`, child() and bindings(). */
class FakePino {
  readonly calls: { level: string; fields: Record<string, unknown>; message: string }[] = []
  readonly #record = (level: string) =>
    function (this: FakePino, fields: Record<string, unknown>, message: string): void {
      if (!(this instanceof FakePino)) throw new Error('called without its this')
      this.calls.push({ level, fields, message })
    }
  debug = this.#record('debug')
  info = this.#record('info')
  warn = this.#record('warn')
  error = this.#record('error')
  child(): FakePino {
    return this
  }
  bindings(): Record<string, unknown> {
    return {}
  }
}

const failingProcessor = (logger?: ConstructorParameters<typeof InboxProcessor>[0]['logger']) => {
  const store = createMemoryStore()
  return new InboxProcessor({
    inbox: store.inbox,
    source: new FakeSource(),
    workerId: 'inbox-log',
    maxDeliveries: 2,
    random: () => 0,
    handler: async () => {
      throw new Error('downstream refused')
    },
    ...(logger === undefined ? {} : { logger }),
  })
}

const deadLetteringRelay = (logger?: ConstructorParameters<typeof OutboxRelay>[0]['logger']) => {
  const store = createMemoryStore()
  const publisher = new FakePublisher()
  publisher.outcome = () => new Error('no stream')
  const relay = new OutboxRelay({
    outbox: store.outbox,
    publisher,
    workerId: 'relay-log',
    maxAttempts: 1,
    ...(logger === undefined ? {} : { logger }),
  })
  return { store, relay }
}

describe('createJsonLogger', () => {
  it('writes one JSON object per line, warnings and errors by default', () => {
    const out: string[] = []
    const logger = createJsonLogger({
      stream: { write: (line: string) => out.push(line) },
      fields: { component: 'test' },
      now: () => new Date('2026-01-01T00:00:00.000Z'),
    })
    logger.debug('not shown')
    logger.info('not shown either')
    logger.warn('careful', { eventId: 'e-1' })
    logger.error('broken', { error: new Error('boom'), big: 10n })
    expect(out.every((line) => line.endsWith('\n') && line.indexOf('\n') === line.length - 1)).toBe(true)
    expect(out.map((line) => JSON.parse(line))).toEqual([
      { time: '2026-01-01T00:00:00.000Z', level: 'warn', msg: 'careful', component: 'test', eventId: 'e-1' },
      {
        time: '2026-01-01T00:00:00.000Z',
        level: 'error',
        msg: 'broken',
        component: 'test',
        error: expect.objectContaining({ name: 'Error', message: 'boom' }),
        big: '10',
      },
    ])
  })

  it('takes a level, and never throws on a cyclic field', () => {
    const out: string[] = []
    const logger = createJsonLogger({ level: 'debug', stream: { write: (line: string) => out.push(line) } })
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    logger.debug('d', { cyclic })
    logger.info('i')
    expect(out.map((line) => (JSON.parse(line) as { level: string }).level)).toEqual(['debug', 'info'])
    expect(JSON.parse(out[0] ?? '')).toMatchObject({ cyclic: { self: '[circular]' } })
    expect(() => createJsonLogger({ level: 'verbose' as never })).toThrow(ValidationError)
  })
})

describe('default logging of the relay and the processor', () => {
  let stderr: ReturnType<typeof captureStderr> | undefined
  afterEach(() => stderr?.restore())

  it('the processor reports a terminated message on stderr without any logger configured', async () => {
    stderr = captureStderr()
    const processor = failingProcessor()
    await processor.handle(message({ eventId: 'poison-1', deliveryCount: 1 }))
    await processor.handle(message({ eventId: 'poison-1', deliveryCount: 2 }))
    stderr.restore()
    expect(stderr.records()).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'handler failed; redelivering',
        component: 'inbox-processor',
        workerId: 'inbox-log',
        eventId: 'poison-1',
        error: 'downstream refused',
      }),
      expect.objectContaining({
        level: 'error',
        msg: 'message terminated after max deliveries',
        component: 'inbox-processor',
        eventId: 'poison-1',
        deliveries: 2,
      }),
    ])
  })

  it('the relay reports a dead-lettered event on stderr without any logger configured', async () => {
    stderr = captureStderr()
    const { relay, store } = deadLetteringRelay()
    await store.outbox.findOrCreate({ eventId: 'dead-1', subject: 'orders.created', payload: '{}' })
    await relay.runOnce()
    stderr.restore()
    expect(stderr.records()).toContainEqual(
      expect.objectContaining({
        level: 'error',
        msg: 'event dead-lettered',
        component: 'relay',
        workerId: 'relay-log',
        eventId: 'dead-1',
      }),
    )
  })

  it('silentLogger silences both', async () => {
    stderr = captureStderr()
    const processor = failingProcessor(silentLogger)
    await processor.handle(message({ eventId: 'quiet-1', deliveryCount: 1 }))
    await processor.handle(message({ eventId: 'quiet-1', deliveryCount: 2 }))
    const { relay, store } = deadLetteringRelay(silentLogger)
    await store.outbox.findOrCreate({ eventId: 'quiet-2', subject: 'orders.created', payload: '{}' })
    await relay.runOnce()
    stderr.restore()
    expect(processor.counters().terminated).toBe(1)
    expect(relay.counters().dead).toBe(1)
    expect(stderr.raw()).toBe('')
  })
})

describe('plugging in a logger', () => {
  it('a pino-shaped logger is called fields first, message second, with its own this', async () => {
    const pino = new FakePino()
    const processor = failingProcessor(pino)
    await processor.handle(message({ eventId: 'p-1', deliveryCount: 1 }))
    await processor.handle(message({ eventId: 'p-1', deliveryCount: 2 }))
    expect(pino.calls).toEqual([
      {
        level: 'warn',
        fields: expect.objectContaining({ eventId: 'p-1' }),
        message: 'handler failed; redelivering',
      },
      {
        level: 'error',
        fields: expect.objectContaining({ eventId: 'p-1', deliveries: 2 }),
        message: 'message terminated after max deliveries',
      },
    ])
    const relayPino = new FakePino()
    const { relay, store } = deadLetteringRelay(relayPino)
    await store.outbox.findOrCreate({ eventId: 'p-2', subject: 'orders.created', payload: '{}' })
    await relay.runOnce()
    expect(relayPino.calls).toContainEqual({
      level: 'error',
      fields: expect.objectContaining({ eventId: 'p-2' }),
      message: 'event dead-lettered',
    })
  })

  it('a bunyan-shaped logger (child() and a fields object) is called fields first too', () => {
    const calls: unknown[][] = []
    const bunyan = {
      fields: { name: 'app' },
      child: () => bunyan,
      warn: (...args: unknown[]) => calls.push(args),
      error: (...args: unknown[]) => calls.push(args),
    }
    resolveLogger('test', bunyan).warn('careful', { eventId: 'b-1' })
    expect(calls).toEqual([[{ eventId: 'b-1' }, 'careful']])
  })

  it('console and other (message, fields) loggers are called as they are', async () => {
    const warn = vi.fn()
    const error = vi.fn()
    const processor = failingProcessor({ warn, error })
    await processor.handle(message({ eventId: 'c-1', deliveryCount: 1 }))
    expect(warn).toHaveBeenCalledWith(
      'handler failed; redelivering',
      expect.objectContaining({ eventId: 'c-1' }),
    )
    expect(error).not.toHaveBeenCalled()
    // console itself fits the type and is not mistaken for a fields-first logger.
    expect(resolveLogger('test', console)).toBe(console)
  })

  it('refuses something that is not a logger, saying what fits', () => {
    expect(() => failingProcessor({ warn: 'loud' } as never)).toThrow(
      /^\[txbox\] \[inbox-processor\] logger must have warn\(\) and error\(\) methods/,
    )
    expect(() => deadLetteringRelay(null as never)).toThrow(ValidationError)
  })
})
