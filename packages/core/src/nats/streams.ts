import { AckPolicy, type JetStreamManager, nanos } from 'nats'

/** Options of {@link ensureStream}. */
export interface EnsureStreamOptions {
  name: string
  subjects: string[]
  /**
   * JetStream's dedup window on `Nats-Msg-Id` (default 2 minutes). A relay that republishes
   * an event (lost lease, crash before marking) within it gets a duplicate ack; later than
   * it the message is stored twice and the inbox deduplicates it.
   */
  duplicateWindowMs?: number | undefined
}

const isNotFound = (error: unknown): boolean => error instanceof Error && /not found/i.test(error.message)

/** Creates the stream if it does not exist (an existing stream is left as it is). */
export const ensureStream = async (jsm: JetStreamManager, options: EnsureStreamOptions): Promise<void> => {
  try {
    await jsm.streams.info(options.name)
    return
  } catch (error) {
    if (!isNotFound(error)) throw error
  }
  await jsm.streams.add({
    name: options.name,
    subjects: options.subjects,
    duplicate_window: nanos(options.duplicateWindowMs ?? 120_000),
  })
}

/** Options of {@link ensureDurableConsumer}. */
export interface EnsureConsumerOptions {
  stream: string
  durable: string
  /** Only messages on these subjects (default: the whole stream). */
  filterSubject?: string | undefined
  /** Redelivery after this long without an ack (default 30,000 ms). */
  ackWaitMs?: number | undefined
  /** Server-side delivery cap (default unlimited: the InboxProcessor terminates after its own maxDeliveries). */
  maxDeliver?: number | undefined
  /** Unacked messages outstanding (default 1,000). */
  maxAckPending?: number | undefined
}

/** Creates the durable pull consumer with explicit acks, or updates its settings if it exists. */
export const ensureDurableConsumer = async (
  jsm: JetStreamManager,
  options: EnsureConsumerOptions,
): Promise<void> => {
  await jsm.consumers.add(options.stream, {
    durable_name: options.durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs ?? 30_000),
    max_deliver: options.maxDeliver ?? -1,
    max_ack_pending: options.maxAckPending ?? 1_000,
    ...(options.filterSubject === undefined ? {} : { filter_subject: options.filterSubject }),
  })
}
