/**
 * The OpenTelemetry trace SDK as a service registers it, with the in-memory exporter, for
 * the end-to-end trace test and its consumer process. (Core's own tests register the
 * metrics SDK too, in packages/core/test/telemetry-setup.ts; that file lies outside this
 * package's TypeScript project.)
 */
import { context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'

export const registerTracing = (): InMemorySpanExporter => {
  const spans = new InMemorySpanExporter()
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  return spans
}
