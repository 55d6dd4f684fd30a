import { performance } from 'node:perf_hooks'

/** One timed unit of work: `setup` is not timed, `run` is. */
export interface Work {
  /** Events (or inbox messages) the run handles: the numerator of events/s. */
  readonly events: number
  /** Calls of the measured operation (for "round trips per call"). */
  readonly calls: number
  setup?(): Promise<void>
  run(): Promise<void>
}

export interface Timing {
  /** Events per second of each timed run, in run order. */
  readonly samples: number[]
  readonly median: number
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  if (sorted.length === 0) return Number.NaN
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

const timeOnce = async (work: Work): Promise<number> => {
  await work.setup?.()
  const started = performance.now()
  await work.run()
  const seconds = (performance.now() - started) / 1000
  return work.events / seconds
}

/**
 * Times the adapter and its raw baseline over the same work: one warm-up pair (not
 * recorded), then `runs` pairs. The two sides alternate run by run, so a burst of load from
 * elsewhere on the machine hits both rather than skewing the ratio.
 */
export const timePair = async (
  make: (run: number) => Promise<{ adapter: Work; raw: Work }>,
  runs: number,
): Promise<{ adapter: Timing; raw: Timing }> => {
  const a: number[] = []
  const r: number[] = []
  for (let run = -1; run < runs; run++) {
    const pair = await make(run)
    const first = run % 2 === 0 ? 'adapter' : 'raw'
    const order: Array<'adapter' | 'raw'> = first === 'adapter' ? ['adapter', 'raw'] : ['raw', 'adapter']
    for (const side of order) {
      const rate = await timeOnce(pair[side])
      if (run >= 0) (side === 'adapter' ? a : r).push(rate)
    }
  }
  return { adapter: { samples: a, median: median(a) }, raw: { samples: r, median: median(r) } }
}

/** Runs `work` once and returns how many counted units it sent per call. */
export const countPerCall = async (
  work: Work,
  counter: { reset(): void; value(): number },
): Promise<number> => {
  await work.setup?.()
  counter.reset()
  await work.run()
  return counter.value() / work.calls
}
