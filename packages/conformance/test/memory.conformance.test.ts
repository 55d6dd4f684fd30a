import { describeConformance } from '@txbox/conformance/vitest'
import { createMemoryTarget } from '../src/memory-target.js'

describeConformance(createMemoryTarget())
