import { describeConformance } from '@txbox/conformance/vitest'
import { createConformanceTarget } from '../src/conformance-target.js'

// The whole suite again on the time-partitioned layout: event-id uniqueness through the id
// table and its triggers, statements without a conflict target, and cleanup dropping whole
// partitions must keep every rule the plain tables keep. Daily partitions, so the cleanup
// cases (days of ManualClock time) cross partition boundaries.
describeConformance(createConformanceTarget({ partitioning: { interval: 'daily' } }), {
  serverName: 'postgres',
})
