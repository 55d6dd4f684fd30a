/**
 * Span and metric attribute names: the OpenTelemetry messaging semantic conventions where
 * they name the thing, `txbox.*` for what they do not (the JetStream stream, the outbox's
 * retry count, the outcome). Written out here so that core needs no semantic-conventions
 * package at run time.
 */
export const ATTR = {
  system: 'messaging.system',
  operationName: 'messaging.operation.name',
  operationType: 'messaging.operation.type',
  destination: 'messaging.destination.name',
  messageId: 'messaging.message.id',
  bodySize: 'messaging.message.body.size',
  batchCount: 'messaging.batch.message_count',
  errorType: 'error.type',
  stream: 'txbox.nats.stream',
  streamSeq: 'txbox.nats.stream_sequence',
  retryCount: 'txbox.retry_count',
  deliveryCount: 'txbox.delivery_count',
  outcome: 'txbox.outcome',
  deadLetterReason: 'txbox.dead_letter.reason',
  workerId: 'txbox.worker_id',
  duplicate: 'txbox.duplicate',
  notApplied: 'txbox.not_applied',
} as const

/** `messaging.system`: txbox's transport. */
export const MESSAGING_SYSTEM = 'nats'

/** The instrumentation scope of every tracer and meter txbox uses. */
export const SCOPE = '@txbox/core'

/** What happened to an event or message, as `txbox.outcome`. */
export type Outcome =
  | 'published'
  | 'duplicate'
  | 'retry'
  | 'dead-letter'
  | 'lease-lost'
  | 'store-error'
  | 'processed'
  | 'redelivered'
  | 'terminated'
  | 'skipped-duplicate'
  | 'in-flight-elsewhere'
