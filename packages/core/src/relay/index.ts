export {
  type BackoffOptions,
  backoffDelayMs,
  DEFAULT_BACKOFF,
  type ResolvedBackoff,
  resolveBackoff,
} from './backoff.js'
export { DEFAULT_MAX_BATCH_BYTES } from './claim-budget.js'
export { type HistogramSnapshot, LATENCY_BUCKETS_MS } from './histogram.js'
export type { HealthReport, RelayCounters, RelayMetrics } from './metrics.js'
export { OutboxRelay, type OutboxRelayOptions, type RetentionOptions } from './outbox-relay.js'
export {
  createPrometheusExporter,
  type MetricsSource,
  type PrometheusExporter,
  type PrometheusOptions,
  type PromRegistry,
} from './prometheus.js'
export { errorFields, messageOf, realSleep, type Sleep } from './sleep.js'
export {
  type MappedSubject,
  SubjectMap,
  type SubjectMapEntry,
  type SubjectMapFunction,
  type SubjectMapOption,
  subjectPatternCovers,
  subjectPatternProblem,
} from './subject-map.js'
export type {
  DuplicateCheck,
  OutboxPublisher,
  PublishErrorFields,
  PublishReceipt,
  RelayWakeup,
} from './types.js'
