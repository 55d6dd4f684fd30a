import { describeConformance } from '@txbox/conformance/vitest'
import { describe, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'

// The whole suite again on a Redis Cluster: proves that every script and the caller's MULTI
// stay in the one slot of the store's hash tag. `scripts/services.sh up` starts a native
// 3-master Cluster (127.0.0.1:7101-7103) and `services.sh env` exports its nodes; under
// TXBOX_REQUIRE_ALL=1 (CI) a missing Cluster fails the run instead of skipping it.
const nodes = process.env.TXBOX_REDIS_CLUSTER_NODES
const required = process.env.TXBOX_REQUIRE_ALL === '1'
const MISSING =
  'TXBOX_REDIS_CLUSTER_NODES is not set (run `bash scripts/services.sh up redis-cluster` and export `bash scripts/services.sh env`)'

if (nodes) {
  describeConformance(createConformanceTarget({ clusterNodes: nodes.split(',') }))
} else {
  describe('conformance: redis-cluster', () => {
    it.skipIf(!required)(`not run: ${MISSING}`, () => {
      throw new Error(`TXBOX_REQUIRE_ALL=1 but ${MISSING}`)
    })
  })
}
