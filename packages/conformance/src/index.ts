export {
  type CaseContext,
  CaseSkipped,
  type ConformanceCase,
  defineCase,
  requiresTransactions,
  SUITE_EPOCH,
  skipCase,
} from './case.js'
export { conformanceCases } from './cases/index.js'
export {
  CONTAINER_PRESETS,
  type ContainerPreset,
  containerImage,
  imageVariable,
  runningContainerCount,
  type StartContainerOptions,
  type StartedServer,
  startContainer,
} from './containers.js'
export { capabilityProblems } from './declared-capabilities.js'
export { describeFailure, type FailureDetail } from './failure.js'
export { BUILT_IN_TARGETS, loadTarget } from './load-target.js'
export { createMemoryTarget } from './memory-target.js'
export {
  dockerConfigured,
  type ProvisionedServer,
  provisionServer,
  requireAll,
  testcontainersOff,
  type Unprovisioned,
  urlVariable,
} from './provision.js'
export {
  type CaseResult,
  type CaseStatus,
  type ConformanceReport,
  formatReport,
  summarize,
  type TargetError,
} from './report.js'
export {
  buildReport,
  CASE_TIMEOUT_MS,
  type CaseBlock,
  CaseFailedError,
  certifyCase,
  prepareTarget,
  type RunOptions,
  runCase,
  runConformance,
  selectCases,
} from './runner.js'
export {
  checkMutant,
  type MutantRun,
  runMutant,
  type StatementMutant,
  type StatementRewriter,
  statementRewriter,
} from './statement-mutants.js'
export {
  type ConformanceFixture,
  type ConformancePeer,
  type ConformanceTarget,
  type ConformanceTargetModule,
  type Oracle,
  type ServerConnection,
  type ServerEngine,
  type TargetInfo,
  uniqueSuffix,
} from './target.js'
export {
  type AreaVerdict,
  CAPABILITY_AREAS,
  type CapabilityArea,
  caseArea,
  type Verdict,
} from './verdict.js'
export { SUITE_VERSION } from './version.js'
