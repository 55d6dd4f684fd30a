import { describeConformance } from '@txbox/conformance/vitest'
import { describe, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'

// The whole suite again on a Redis Cluster, when one is given: proves that every script
// and the caller's MULTI stay in the one slot of the store's hash tag. services.sh does not
// start a Cluster, so this is opt-in (e.g. TXBOX_REDIS_CLUSTER_NODES=127.0.0.1:7101,127.0.0.1:7102).
const nodes = process.env.TXBOX_REDIS_CLUSTER_NODES

if (nodes) {
  describeConformance(createConformanceTarget({ clusterNodes: nodes.split(',') }))
} else {
  describe('conformance: redis-cluster', () => {
    it.skip('not run: TXBOX_REDIS_CLUSTER_NODES is not set (no Redis Cluster to test against)', () => {})
  })
}
