/**
 * Per-key order on the consumer side (docs/CONTRACT.md, "Ordering keys"). JetStream delivers
 * a key's messages in the order the relay published them; this keeps that order through the
 * processor's concurrency and through redeliveries:
 * - the messages of one key run one at a time, in arrival order (`inTurn`);
 * - a keyed message put back for redelivery (its handler failed, the store failed, another
 *   worker holds it, or it waited for an earlier one) holds its key until it is finished
 *   (acked or terminated): a message of that key with a higher `keySeq` is put back without
 *   running its handler meanwhile (`holds`). The lowest holder never waits, so a key cannot
 *   deadlock. Only messages that carry both `Txbox-Ordering-Key` and `Txbox-Key-Seq` hold or
 *   wait; a key's message without a sequence only runs in turn.
 * A holder not seen again within `holdMs` (JetStream may have dropped it: the consumer's
 * `max_deliver`) stops holding, so a key is never blocked forever in this process. The state
 * is this processor's memory: processors sharing one durable consumer each see part of a
 * key's messages, so per-key order on the consumer side needs one processor per consumer
 * (the relay keeps order across any number of relays).
 */
export class KeyOrder {
  readonly #tails = new Map<string, Promise<void>>()
  /** Per key: the put-back messages' `keySeq` and when they were last put back, by event id. */
  readonly #holders = new Map<string, Map<string, { readonly keySeq: number; readonly atMs: number }>>()
  readonly #holdMs: number

  constructor(holdMs: number) {
    this.#holdMs = holdMs
  }

  /** Runs `work` once every message of `key` handed in before it has finished. `work` never throws. */
  async inTurn(key: string, work: () => Promise<void>): Promise<void> {
    const previous = this.#tails.get(key)
    const mine = previous === undefined ? work() : previous.then(work)
    this.#tails.set(key, mine)
    try {
      await mine
    } finally {
      if (this.#tails.get(key) === mine) this.#tails.delete(key)
    }
  }

  /** True when a message of `key` with a lower `keySeq` is waiting for its redelivery. */
  holds(key: string, eventId: string, keySeq: number, nowMs: number): boolean {
    const holders = this.#holders.get(key)
    if (holders === undefined) return false
    let held = false
    for (const [holderId, holder] of holders) {
      if (nowMs - holder.atMs > this.#holdMs) holders.delete(holderId)
      else if (holderId !== eventId && holder.keySeq < keySeq) held = true
    }
    if (holders.size === 0) this.#holders.delete(key)
    return held
  }

  /** The message was put back (nak): it holds its key until it is finished. */
  putBack(key: string, eventId: string, keySeq: number, nowMs: number): void {
    let holders = this.#holders.get(key)
    if (holders === undefined) {
      holders = new Map()
      this.#holders.set(key, holders)
    }
    holders.set(eventId, { keySeq, atMs: nowMs })
  }

  /** The message is finished (acked, or terminated): it no longer holds its key. */
  finished(key: string, eventId: string): void {
    const holders = this.#holders.get(key)
    if (holders === undefined) return
    holders.delete(eventId)
    if (holders.size === 0) this.#holders.delete(key)
  }

  /** How many keys are held right now. */
  heldKeys(): number {
    return this.#holders.size
  }
}
