import { conformanceOnly } from './vitest.shared.ts'

export default conformanceOnly('packages/conformance/test/memory.conformance.test.ts')
