/**
 * The OpenTelemetry SDK as an application registers it, with in-memory exporters, for the
 * telemetry tests (each vitest file runs in its own worker, so globals do not leak).
 */
import { context, metrics, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core'
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base'

export interface RegisteredSdk {
  readonly spans: InMemorySpanExporter
  /** Collects the metrics now and answers the last export. */
  collectMetrics(): Promise<ResourceMetrics[]>
}

export const registerSdk = (): RegisteredSdk => {
  const spans = new InMemorySpanExporter()
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  )
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  // The interval is never reached: the tests collect with forceFlush.
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
  return {
    spans,
    async collectMetrics() {
      exporter.reset()
      await reader.forceFlush()
      return exporter.getMetrics()
    },
  }
}

/** The finished spans named `name`. */
export const spansNamed = (sdk: RegisteredSdk, name: string): ReadableSpan[] =>
  sdk.spans.getFinishedSpans().filter((span) => span.name === name)

/** The data points of the metric `name` in the last collection. */
export const pointsOf = (collected: ResourceMetrics[], name: string) =>
  collected
    .flatMap((resource) => resource.scopeMetrics)
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name)
    .flatMap((metric): DataPoint<unknown>[] => metric.dataPoints)
