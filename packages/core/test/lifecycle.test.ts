import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  InboxProcessor,
  type InboxSubscription,
  OutboxRelay,
  type OutboxRelayOptions,
  type RelayWakeup,
  silentLogger,
  ValidationError,
} from '../src/index.js'
import { FakePublisher, FakeSource, flush, ManualSleeper } from './helpers.js'

/** A wake-up hint that records its lifecycle; `wait` never hints on its own. */
class FakeWakeup implements RelayWakeup {
  readonly log: string[] = []
  closeError: Error | undefined
  /** What `wait` answers at once; undefined: wait until aborted. */
  answer: boolean | undefined
  relayStateAtClose: string | undefined
  relay: OutboxRelay | undefined

  async listen(): Promise<void> {
    this.log.push('listen')
  }

  wait(signal: AbortSignal): Promise<unknown> {
    this.log.push('wait')
    if (this.answer !== undefined) return Promise.resolve(this.answer)
    return new Promise((resolve) => signal.addEventListener('abort', () => resolve(false), { once: true }))
  }

  async close(): Promise<void> {
    this.log.push('close')
    this.relayStateAtClose = this.relay?.state
    if (this.closeError) throw this.closeError
  }
}

const relayWith = (wakeup: FakeWakeup, options: Partial<OutboxRelayOptions> = {}) => {
  const sleeper = new ManualSleeper()
  const relay = new OutboxRelay({
    outbox: createMemoryStore().outbox,
    publisher: new FakePublisher(),
    sleep: sleeper.sleep,
    logger: silentLogger,
    retention: { staleMinutes: null, sentOlderThanDays: null },
    wakeup,
    ...options,
  })
  wakeup.relay = relay
  return { relay, sleeper }
}

describe('OutboxRelay.stop() releases the wakeup it owns', () => {
  it('closes the wakeup once, after the loop has ended; stop() stays idempotent', async () => {
    const wakeup = new FakeWakeup()
    const { relay } = relayWith(wakeup)
    relay.start()
    await flush()
    expect(wakeup.log).toEqual(['listen', 'wait'])
    await relay.stop()
    await relay.stop()
    expect(wakeup.log).toEqual(['listen', 'wait', 'close'])
    expect(wakeup.relayStateAtClose).toBe('stopped')
  })

  it('closes it even when the relay never started', async () => {
    const wakeup = new FakeWakeup()
    const { relay } = relayWith(wakeup)
    await relay.stop()
    expect(wakeup.log).toEqual(['close'])
    expect(relay.state).toBe('stopped')
  })

  it('leaves it open with ownsWakeup: false', async () => {
    const wakeup = new FakeWakeup()
    const { relay } = relayWith(wakeup, { ownsWakeup: false })
    relay.start()
    await flush()
    await relay.stop()
    expect(wakeup.log).not.toContain('close')
  })

  it('a wakeup without close() (a hand-made { wait, listen }) still stops cleanly', async () => {
    const inner = new FakeWakeup()
    const { relay } = relayWith(inner, { wakeup: { wait: (signal) => inner.wait(signal) } })
    relay.start()
    await flush()
    await relay.stop()
    expect(relay.state).toBe('stopped')
    expect(inner.log).toEqual(['wait'])
  })

  it('a failing close() is logged, and stop() still resolves', async () => {
    const wakeup = new FakeWakeup()
    wakeup.closeError = new Error('UNLISTEN failed')
    const warnings: unknown[] = []
    const { relay } = relayWith(wakeup, {
      logger: {
        warn: (message: string, fields?: Record<string, unknown>) => warnings.push({ message, ...fields }),
        error: () => {},
      },
    })
    await expect(relay.stop()).resolves.toBeUndefined()
    expect(warnings).toEqual([{ message: 'closing the wakeup failed', error: 'UNLISTEN failed' }])
  })

  it('a wakeup that answers false at once (closed) is no hint: the relay waits the poll interval', async () => {
    const wakeup = new FakeWakeup()
    wakeup.answer = false
    const { relay, sleeper } = relayWith(wakeup, { ownsWakeup: false, pollIntervalMs: 1_000 })
    relay.start()
    await flush()
    const claims = relay.counters().claims
    await flush()
    expect(relay.counters().claims).toBe(claims)
    expect(sleeper.fire(1_000)).toBe(1)
    await flush()
    expect(relay.counters().claims).toBe(claims + 1)
    await relay.stop()
  })

  it('refuses an ownsWakeup that is not a boolean', () => {
    expect(() => relayWith(new FakeWakeup(), { ownsWakeup: 'no' as never })).toThrow(ValidationError)
  })
})

describe('InboxProcessor.stop()', () => {
  it('a stop() while the subscription is being set up ends that subscription too', async () => {
    const source = new FakeSource()
    let stopped = 0
    let subscribed: ((subscription: InboxSubscription) => void) | undefined
    const slowSource = {
      subscribe: () =>
        new Promise<InboxSubscription>((resolve) => {
          subscribed = resolve
        }),
    }
    const handled: string[] = []
    const processor = new InboxProcessor({
      inbox: createMemoryStore().inbox,
      source: slowSource,
      logger: silentLogger,
      handler: async ({ event }) => {
        handled.push(event.eventId)
      },
    })
    const starting = processor.start()
    const stopping = processor.stop()
    const real = await source.subscribe()
    subscribed?.({
      [Symbol.asyncIterator]: () => real[Symbol.asyncIterator](),
      // Ending a real subscription takes a round trip: stop() must wait for it.
      stop: async () => {
        await new Promise<void>((resolve) => setImmediate(resolve))
        await real.stop()
        stopped++
      },
    })
    await stopping
    expect(stopped).toBe(1)
    await starting
    expect(processor.state).toBe('stopped')
    expect(handled).toEqual([])
  })

  it('a failed start() followed by stop() leaves the processor stopped', async () => {
    const processor = new InboxProcessor({
      inbox: createMemoryStore().inbox,
      source: { subscribe: () => Promise.reject(new Error('no such consumer')) },
      logger: silentLogger,
      handler: async () => {},
    })
    const starting = processor.start()
    const stopping = processor.stop()
    await expect(starting).rejects.toThrow('no such consumer')
    await stopping
    expect(processor.state).toBe('stopped')
  })
})
