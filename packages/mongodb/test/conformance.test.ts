import { describeConformance } from '@txbox/conformance/vitest'
import { createConformanceTarget } from '../src/conformance-target.js'

describeConformance(createConformanceTarget())
