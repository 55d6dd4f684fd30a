export {
  type ConformanceFixture,
  type ConformanceTarget,
  type ConformanceTargetModule,
  type Oracle,
  type ServerConnection,
  type ServerEngine,
  type TargetInfo,
  uniqueSuffix,
} from './target.js'
