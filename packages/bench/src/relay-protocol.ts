import type { RelayEndpoint } from './raw-relay/types.js'

/** What a relay process runs: txbox's OutboxRelay or the raw relay, on a namespace the parent created. */
export interface RelayChildSpec {
  readonly endpoint: RelayEndpoint
  readonly relay: 'txbox' | 'raw'
  readonly natsUrl: string
  readonly workerId: string
  /** txbox: undefined = the relay's own default. raw: events per claim. */
  readonly batchSize: number | undefined
  /** txbox only; undefined = the relay's default. */
  readonly concurrency: number | undefined
  /** txbox only; undefined = the relay's default (2; 1 = the lockstep relay before issue 16). */
  readonly batchesInFlight: number | undefined
  /** txbox only; undefined = the relay's default (128 MiB, which caps a claim at 128 events of the 1 MiB maxEventBytes). */
  readonly maxBatchBytes: number | undefined
  readonly pollIntervalMs: number
  /** How often the child reports its progress (and RSS when `rss`). */
  readonly reportEveryMs: number
  readonly rss: boolean
}

/** Parent -> child: start relaying (all children at once, so the parent times from here), or stop and report. */
export type ParentMessage = { readonly type: 'start' } | { readonly type: 'stop' }

/** Child -> parent. `published` = events published and marked sent; `errors` = failed publishes, claims or marks. */
export type ChildMessage =
  | { readonly type: 'ready'; readonly rssKb: number }
  | { readonly type: 'progress'; readonly published: number; readonly errors: number; readonly rssKb: number }
  | {
      readonly type: 'done'
      readonly published: number
      readonly errors: number
      readonly rssKb: number
      readonly hwmKb: number
      /** CPU time (user + system) the process spent from 'start' to 'stop'. */
      readonly cpuMs: number
    }
