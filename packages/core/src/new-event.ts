import type { InboxEvent, InboxParams } from './inbox.js'
import type { EnqueueParams, OutboxEvent } from './outbox.js'

/**
 * The event `findOrCreate` stores for new params: `pending`, `retryCount` 0, `availableAt`
 * = `params.availableAt ?? now`. Adapters that must answer before the write is visible (a
 * MULTI, a transaction collector) and adapters whose INSERT stores every field as given (so
 * reading the new row back would answer the same) return this as the stored event, with the
 * `keySeq` the store assigned to a keyed event (absent when it is assigned at commit).
 */
export const newOutboxEvent = (params: EnqueueParams, now: Date, keySeq?: number): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: params.eventId,
    subject: params.subject,
    payload: params.payload,
    status: 'pending',
    // Own Date objects: one `now` serves a whole batch, and `availableAt` is the caller's.
    enqueuedAt: new Date(now.getTime()),
    retryCount: 0,
    availableAt: new Date((params.availableAt ?? now).getTime()),
  }
  if (params.headers !== undefined) event.headers = params.headers
  if (params.orderingKey !== undefined) {
    event.orderingKey = params.orderingKey
    if (keySeq !== undefined) event.keySeq = keySeq
  }
  return event
}

/** The event the inbox's `findOrCreate` stores for a first delivery: `processing`, `deliveries` 1, no lease. */
export const newInboxEvent = (params: InboxParams, now: Date): InboxEvent => {
  const event: InboxEvent = {
    eventId: params.eventId,
    subject: params.subject,
    payload: params.payload,
    status: 'processing',
    receivedAt: now,
    deliveries: 1,
  }
  if (params.headers !== undefined) event.headers = params.headers
  if (params.stream !== undefined && params.streamSeq !== undefined) {
    event.stream = params.stream
    event.streamSeq = params.streamSeq
  }
  return event
}
