import type { RedisClient } from './client.js'

interface PendingRead {
  readonly key: string
  resolve(record: Record<string, string>): void
  reject(error: unknown): void
}

/**
 * HGETALLs asked for in the same tick, sent to Redis as one write. A `{ tx }` enqueue reads its
 * event before the caller's EXEC (see `RedisOutboxRepository`), and that read is a round trip
 * of its own; when several callers enqueue at once on one client (concurrent requests, each
 * with its MULTI), their reads wait for the same process.nextTick, which runs once the
 * promise jobs of the moment have run, and go out as one pipeline: one socket write and one
 * reply batch for all of them instead of one each. A lone read is sent as a plain HGETALL.
 * Each caller gets its own key's reply, or its own command's error; a pipeline that fails as
 * a whole (the connection) fails every read in it.
 */
export class CoalescedHashReads {
  readonly #redis: RedisClient
  #pending: PendingRead[] = []

  constructor(redis: RedisClient) {
    this.#redis = redis
  }

  /** The hash under `key` as HGETALL answers it (empty when the key does not exist). */
  read(key: string): Promise<Record<string, string>> {
    return new Promise((resolve, reject) => {
      if (this.#pending.push({ key, resolve, reject }) === 1) process.nextTick(() => this.#flush())
    })
  }

  #flush(): void {
    const reads = this.#pending
    this.#pending = []
    const [only] = reads
    if (reads.length === 1 && only !== undefined) {
      this.#redis.hgetall(only.key).then(only.resolve, only.reject)
      return
    }
    const pipeline = this.#redis.pipeline()
    for (const { key } of reads) pipeline.hgetall(key)
    pipeline.exec().then(
      (results) => {
        reads.forEach((read, index) => {
          const [error, record] = results?.[index] ?? [new Error('the pipeline answered no reply'), null]
          if (error) read.reject(error)
          else read.resolve(record as Record<string, string>)
        })
      },
      (error: unknown) => {
        for (const read of reads) read.reject(error)
      },
    )
  }
}
