// @ts-check
import { mutationRun } from './stryker.shared.mjs'

export default mutationRun({
  name: 'memory',
  mutate: ['packages/core/src/memory/**/*.ts'],
})
