import { describe, expect, it } from 'vitest'
import {
  AmbientTransactions,
  type ClassifyStorageError,
  StorageError,
  type TransactionDriver,
  ValidationError,
} from '../src/index.js'

/** A native transaction as the fake driver hands it out. */
interface FakeTx {
  readonly id: number
}

/** A driver that records every step and fails the steps a test scripts. */
class FakeDriver implements TransactionDriver<FakeTx> {
  readonly steps: string[] = []
  readonly released: { tx: number; broken: Error | undefined }[] = []
  #next = 1
  failBegin: (() => unknown) | undefined
  failCommit: ((tx: FakeTx) => unknown) | undefined
  failRollback: ((tx: FakeTx) => unknown) | undefined
  failRelease: ((tx: FakeTx) => unknown) | undefined

  async begin(): Promise<FakeTx> {
    const failure = this.failBegin?.()
    if (failure !== undefined) throw failure
    const tx = { id: this.#next++ }
    this.steps.push(`begin ${tx.id}`)
    return tx
  }

  async commit(tx: FakeTx): Promise<void> {
    this.steps.push(`commit ${tx.id}`)
    const failure = this.failCommit?.(tx)
    if (failure !== undefined) throw failure
  }

  async rollback(tx: FakeTx): Promise<void> {
    this.steps.push(`rollback ${tx.id}`)
    const failure = this.failRollback?.(tx)
    if (failure !== undefined) throw failure
  }

  release(tx: FakeTx, broken: Error | undefined): void {
    this.steps.push(`release ${tx.id}`)
    this.released.push({ tx: tx.id, broken })
    const failure = this.failRelease?.(tx)
    if (failure !== undefined) throw failure
  }
}

/** Driver errors with `code: 'SERIALIZATION'` are conflicts, as a database adapter's classify says. */
const classify: ClassifyStorageError = (error) =>
  (error as { code?: unknown }).code === 'SERIALIZATION'
    ? { reason: 'conflict', retryable: true }
    : { reason: 'unknown', retryable: false }

const serializationFailure = (): Error =>
  Object.assign(new Error('could not serialize access'), { code: 'SERIALIZATION' })

const setup = () => {
  const driver = new FakeDriver()
  const ambient = new AmbientTransactions<FakeTx>({ adapter: 'fake', driver, classify })
  return { driver, ambient }
}

describe('AmbientTransactions.run', () => {
  it('begins, runs fn with the transaction ambient, commits, releases once, and answers fn result', async () => {
    const { driver, ambient } = setup()
    expect(ambient.current()).toBeUndefined()
    const result = await ambient.run(async (tx, { attempt }) => {
      driver.steps.push(`fn ${tx.id} attempt ${attempt}`)
      expect(ambient.current()).toBe(tx)
      return 'done'
    })
    expect(result).toBe('done')
    expect(driver.steps).toEqual(['begin 1', 'fn 1 attempt 1', 'commit 1', 'release 1'])
    expect(driver.released).toEqual([{ tx: 1, broken: undefined }])
    expect(ambient.current()).toBeUndefined()
  })

  it('rolls back and rethrows fn error unchanged, releasing once, not broken', async () => {
    const { driver, ambient } = setup()
    const failure = new Error('business rule broken')
    await expect(
      ambient.run(async () => {
        throw failure
      }),
    ).rejects.toBe(failure)
    expect(driver.steps).toEqual(['begin 1', 'rollback 1', 'release 1'])
    expect(driver.released).toEqual([{ tx: 1, broken: undefined }])
  })

  it('releases as broken when the rollback fails, and still rethrows fn error', async () => {
    const { driver, ambient } = setup()
    const lost = new Error('connection terminated')
    driver.failRollback = () => lost
    const failure = new Error('handler failed')
    await expect(
      ambient.run(async () => {
        throw failure
      }),
    ).rejects.toBe(failure)
    expect(driver.released).toHaveLength(1)
    const broken = driver.released[0]?.broken
    expect(broken).toBeInstanceOf(StorageError)
    expect((broken as StorageError).operation).toBe('transaction.rollback')
    expect((broken as StorageError).cause).toBe(lost)
  })

  it('surfaces a begin failure as a classified StorageError with the driver error as cause, with nothing to release', async () => {
    const { driver, ambient } = setup()
    const refused = new Error('ECONNREFUSED')
    driver.failBegin = () => refused
    let ran = false
    const error = await ambient
      .run(async () => {
        ran = true
      })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toBe('[txbox] [fake] transaction.begin failed: ECONNREFUSED')
    expect((error as StorageError).cause).toBe(refused)
    expect((error as StorageError).reason).toBe('unknown')
    expect(ran).toBe(false)
    expect(driver.released).toEqual([])
  })

  it('surfaces a commit failure as a classified StorageError, rolls back (SQLite keeps a failed COMMIT open) and releases once', async () => {
    const { driver, ambient } = setup()
    const conflict = serializationFailure()
    driver.failCommit = () => conflict
    const error = await ambient.run(async () => 'never answered').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).operation).toBe('transaction.commit')
    expect((error as StorageError).reason).toBe('conflict')
    expect((error as StorageError).retryable).toBe(true)
    expect((error as StorageError).cause).toBe(conflict)
    expect(driver.steps).toEqual(['begin 1', 'commit 1', 'rollback 1', 'release 1'])
    expect(driver.released).toEqual([{ tx: 1, broken: undefined }])
  })

  it('reports a release failure after a commit as a StorageError that says the transaction committed, and never retries it', async () => {
    const { driver, ambient } = setup()
    driver.failRelease = () => serializationFailure()
    let runs = 0
    const error = await ambient
      .run(
        async () => {
          runs++
        },
        { retries: 3 },
      )
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).operation).toBe('transaction.release')
    expect((error as StorageError).message).toContain('the transaction had committed')
    expect(runs).toBe(1)
    expect(driver.steps).toEqual(['begin 1', 'commit 1', 'release 1'])
  })

  it('keeps fn error when the release after a rollback fails too', async () => {
    const { driver, ambient } = setup()
    driver.failRelease = () => new Error('pool closed')
    const failure = new Error('handler failed')
    await expect(
      ambient.run(async () => {
        throw failure
      }),
    ).rejects.toBe(failure)
  })
})

describe('AmbientTransactions nesting', () => {
  it('a nested run joins the outer transaction: same tx, same attempt, one begin and one commit', async () => {
    const { driver, ambient } = setup()
    await ambient.run(
      async (outer, { attempt }) => {
        if (attempt === 1) throw serializationFailure()
        const inner = await ambient.run(async (tx, seen) => {
          expect(ambient.current()).toBe(outer)
          return { tx, seen }
        })
        expect(inner.tx).toBe(outer)
        expect(inner.seen).toEqual({ attempt: 2 })
      },
      { retries: 1 },
    )
    expect(driver.steps).toEqual(['begin 1', 'rollback 1', 'release 1', 'begin 2', 'commit 2', 'release 2'])
  })

  it('an error of the nested function rolls back the whole outer transaction', async () => {
    const { driver, ambient } = setup()
    const failure = new Error('inner failed')
    await expect(
      ambient.run(async () => {
        await ambient.run(async () => {
          throw failure
        })
      }),
    ).rejects.toBe(failure)
    expect(driver.steps).toEqual(['begin 1', 'rollback 1', 'release 1'])
  })

  it('refuses retries on a nested call, before running it, naming the outermost call', async () => {
    const { driver, ambient } = setup()
    let innerRan = false
    const error = await ambient
      .run(async () => {
        await ambient.run(
          async () => {
            innerRan = true
          },
          { retries: 0 },
        )
      })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as Error).message).toBe(
      '[txbox] [fake] a nested store.transaction() joins the outer transaction and cannot set retries: pass { retries } to the outermost call',
    )
    expect(innerRan).toBe(false)
    expect(driver.steps).toEqual(['begin 1', 'rollback 1', 'release 1'])
  })

  it('two concurrent runs never see each other transaction', async () => {
    const { ambient } = setup()
    let openSecond: () => void = () => {}
    const secondStarted = new Promise<void>((resolve) => {
      openSecond = resolve
    })
    let releaseFirst: () => void = () => {}
    const firstMayEnd = new Promise<void>((resolve) => {
      releaseFirst = resolve
    })
    const first = ambient.run(async (tx) => {
      await secondStarted
      // The second run began while this one was open: each still sees its own.
      expect(ambient.current()).toBe(tx)
      return tx.id
    })
    const second = ambient.run(async (tx) => {
      openSecond()
      await firstMayEnd
      expect(ambient.current()).toBe(tx)
      return tx.id
    })
    await Promise.resolve()
    releaseFirst()
    const ids = await Promise.all([first, second])
    expect(new Set(ids).size).toBe(2)
    expect(ambient.current()).toBeUndefined()
  })

  it('a write left running after fn returned cannot use the ended transaction: current() throws a ValidationError', async () => {
    const { driver, ambient } = setup()
    let resume: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      resume = resolve
    })
    let late: Promise<unknown> = Promise.resolve()
    await ambient.run(async () => {
      // A continuation created inside fn and not awaited keeps fn's async context.
      late = gate.then(() => ambient.current())
    })
    resume()
    const error = await late.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as Error).message).toBe(
      '[txbox] [fake] this call runs in a store.transaction() that has already ended (committed or rolled back): await every write inside the transaction function, or pass { tx } explicitly',
    )
    expect(driver.steps).toEqual(['begin 1', 'commit 1', 'release 1'])
  })

  it('a run started from such a continuation opens a transaction of its own', async () => {
    const { driver, ambient } = setup()
    let resume: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      resume = resolve
    })
    let late: Promise<number> = Promise.resolve(0)
    await ambient.run(async () => {
      late = gate.then(() => ambient.run(async (tx) => tx.id))
    })
    resume()
    expect(await late).toBe(2)
    expect(driver.steps).toEqual(['begin 1', 'commit 1', 'release 1', 'begin 2', 'commit 2', 'release 2'])
  })
})

describe('AmbientTransactions retries', () => {
  it('runs the whole function again on a conflict of fn, up to retries more times, with the attempt number', async () => {
    const { driver, ambient } = setup()
    const attempts: number[] = []
    const result = await ambient.run(
      async (tx, { attempt }) => {
        attempts.push(attempt)
        if (attempt < 3) throw serializationFailure()
        return tx.id
      },
      { retries: 2 },
    )
    expect(attempts).toEqual([1, 2, 3])
    expect(result).toBe(3)
    expect(driver.released.map((r) => r.tx)).toEqual([1, 2, 3])
    expect(driver.steps.filter((s) => s.startsWith('commit'))).toEqual(['commit 3'])
  })

  it('gives up after retries more runs and rethrows the last conflict', async () => {
    const { driver, ambient } = setup()
    const attempts: number[] = []
    const failures: Error[] = []
    const error = await ambient
      .run(
        async (_tx, { attempt }) => {
          attempts.push(attempt)
          const failure = serializationFailure()
          failures.push(failure)
          throw failure
        },
        { retries: 2 },
      )
      .catch((e: unknown) => e)
    expect(attempts).toEqual([1, 2, 3])
    expect(error).toBe(failures[2])
    expect(driver.released).toHaveLength(3)
  })

  it('retries a conflict at commit', async () => {
    const { driver, ambient } = setup()
    driver.failCommit = (tx) => (tx.id === 1 ? serializationFailure() : undefined)
    const attempts: number[] = []
    await ambient.run(
      async (_tx, { attempt }) => {
        attempts.push(attempt)
      },
      { retries: 1 },
    )
    expect(attempts).toEqual([1, 2])
    expect(driver.steps).toEqual([
      'begin 1',
      'commit 1',
      'rollback 1',
      'release 1',
      'begin 2',
      'commit 2',
      'release 2',
    ])
  })

  it("retries a StorageError whose own reason is 'conflict' (a repository call inside fn)", async () => {
    const { ambient } = setup()
    const attempts: number[] = []
    await ambient.run(
      async (_tx, { attempt }) => {
        attempts.push(attempt)
        if (attempt === 1)
          throw new StorageError('fake', 'outbox.findOrCreate', new Error('deadlock'), undefined, {
            reason: 'conflict',
            retryable: true,
          })
      },
      { retries: 1 },
    )
    expect(attempts).toEqual([1, 2])
  })

  it('never retries other errors: unknown driver errors, other StorageError reasons, txbox errors', async () => {
    const { ambient } = setup()
    const others: (() => Error)[] = [
      () => new Error('syntax error'),
      () =>
        new StorageError('fake', 'outbox.findOrCreate', new Error('gone'), undefined, {
          reason: 'unavailable',
          retryable: true,
        }),
      () => new ValidationError('fake', 'outbox: eventId must be ...'),
      // txbox's own errors are never reclassified, even if the classify would call them a conflict.
      () => Object.assign(new ValidationError('fake', 'bad'), { code: 'SERIALIZATION' }),
    ]
    for (const make of others) {
      let runs = 0
      const failure = make()
      await expect(
        ambient.run(
          async () => {
            runs++
            throw failure
          },
          { retries: 5 },
        ),
      ).rejects.toBe(failure)
      expect(runs).toBe(1)
    }
  })

  it('does not retry a conflict without retries (default 0)', async () => {
    const { driver, ambient } = setup()
    let runs = 0
    await expect(
      ambient.run(async () => {
        runs++
        throw serializationFailure()
      }),
    ).rejects.toThrow('could not serialize access')
    expect(runs).toBe(1)
    expect(driver.released).toHaveLength(1)
  })
})

describe('AmbientTransactions input', () => {
  const invalid: [string, () => Promise<unknown>, string][] = [
    [
      'fn not a function',
      () => setup().ambient.run('select 1' as never),
      '[txbox] [fake] the transaction function must be a function (tx, { attempt }) => Promise; got "select 1"',
    ],
    [
      'options not an object',
      () => setup().ambient.run(async () => {}, 3 as never),
      '[txbox] [fake] transaction options must be an object such as { retries: 3 } or left out; got 3',
    ],
    [
      'options an array',
      () => setup().ambient.run(async () => {}, [] as never),
      '[txbox] [fake] transaction options must be an object such as { retries: 3 } or left out; got an array of length 0',
    ],
    [
      'an unknown option',
      () => setup().ambient.run(async () => {}, { retry: 3 } as never),
      '[txbox] [fake] transaction options has an unknown key "retry"; the only option is retries',
    ],
    [
      'negative retries',
      () => setup().ambient.run(async () => {}, { retries: -1 }),
      '[txbox] [fake] transaction retries must be a non-negative integer (0 = no retry); got -1',
    ],
    [
      'fractional retries',
      () => setup().ambient.run(async () => {}, { retries: 1.5 }),
      '[txbox] [fake] transaction retries must be a non-negative integer (0 = no retry); got 1.5',
    ],
    [
      'infinite retries',
      () => setup().ambient.run(async () => {}, { retries: Number.POSITIVE_INFINITY }),
      '[txbox] [fake] transaction retries must be a non-negative integer (0 = no retry); got Infinity',
    ],
    [
      'retries as a string',
      () => setup().ambient.run(async () => {}, { retries: '3' as never }),
      '[txbox] [fake] transaction retries must be a non-negative integer (0 = no retry); got "3"',
    ],
  ]
  for (const [name, call, message] of invalid) {
    it(`refuses ${name} with a ValidationError before beginning`, async () => {
      const error = await call().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as Error).message).toBe(message)
    })
  }

  it('begins nothing for bad input', async () => {
    const { driver, ambient } = setup()
    await expect(ambient.run(async () => {}, { retries: -1 })).rejects.toThrow(ValidationError)
    expect(driver.steps).toEqual([])
  })
})

describe('AmbientTransactions.assertJoinable: the handles of a singleUse driver', () => {
  /** A driver whose every begin makes a new handle, as a collector or a MULTI is. */
  const singleUse = (singleUseHandles: boolean): TransactionDriver<FakeTx> => {
    const driver = new FakeDriver()
    return {
      singleUse: singleUseHandles,
      begin: () => driver.begin(),
      commit: (tx) => driver.commit(tx),
      rollback: (tx) => driver.rollback(tx),
      release: (tx, broken) => driver.release(tx, broken),
    }
  }

  it("refuses a handle once its store.transaction ended, and in another store's writes; accepts it open, and any handle no store.transaction opened", async () => {
    const store = new AmbientTransactions({ adapter: 'test', driver: singleUse(true) })
    const other = new AmbientTransactions({ adapter: 'other', driver: singleUse(true) })
    let kept: FakeTx | undefined
    await store.run(async (tx) => {
      kept = tx
      expect(() => store.assertJoinable(tx)).not.toThrow()
      expect(() => other.assertJoinable(tx)).toThrow(ValidationError)
      expect(() => other.assertJoinable(tx)).toThrow(
        /^\[txbox\] \[other\] tx is the transaction of another store's store\.transaction\(\) \(test\)/,
      )
    })
    expect(() => store.assertJoinable(kept)).toThrow(
      /^\[txbox\] \[test\] tx belongs to a store\.transaction\(\) that has already ended/,
    )
    let rolledBack: FakeTx | undefined
    await expect(
      store.run(async (tx) => {
        rolledBack = tx
        throw new Error('business rule failed')
      }),
    ).rejects.toThrow('business rule failed')
    expect(() => store.assertJoinable(rolledBack)).toThrow(/already ended/)
    for (const handle of [{ id: 99 }, undefined, null, 'tx'])
      expect(() => store.assertJoinable(handle)).not.toThrow()
  })

  it('leaves the handles of a pooled driver (not singleUse) to the adapter: the caller may take the connection again', async () => {
    for (const flag of [false, undefined]) {
      const driver = singleUse(true)
      const store = new AmbientTransactions({
        adapter: 'test',
        driver: flag === undefined ? { ...driver, singleUse: undefined } : { ...driver, singleUse: flag },
      })
      const other = new AmbientTransactions({ adapter: 'other', driver: singleUse(true) })
      let kept: FakeTx | undefined
      await store.run(async (tx) => {
        kept = tx
        expect(() => other.assertJoinable(tx)).not.toThrow()
      })
      expect(() => store.assertJoinable(kept)).not.toThrow()
    }
  })
})
