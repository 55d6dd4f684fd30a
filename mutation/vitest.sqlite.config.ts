import { conformanceOnly } from './vitest.shared.ts'

export default conformanceOnly('packages/sqlite/test/conformance.test.ts')
