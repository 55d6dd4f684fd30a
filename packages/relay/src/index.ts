export { type CliIo, RELAY_VERSION, runRelayCli } from './cli.js'
export {
  type CliRequest,
  CONFIG_FILE_KEYS,
  ENV_VARIABLES,
  envName,
  FLAG_NAMES,
  helpText,
  parseCli,
  parseConfig,
  type RelayConfig,
} from './config.js'
export { ConfigurationError, UsageError } from './errors.js'
export { listeningPort, serveHttp } from './http.js'
export { type NatsAuth, natsConnectOptions } from './nats-auth.js'
export { ATTEMPT_TIMEOUT_MS, retryUntilReady, STARTUP_BACKOFF } from './retry.js'
export { type RelayPhase, RelayStatus } from './status.js'
export {
  type CreatedStore,
  createStore,
  type Importer,
  type OpenedStore,
  openStore,
  STORE_KINDS,
  STORE_PACKAGES,
  type StoreConfig,
  type StoreKind,
  storeUrlProblem,
} from './stores.js'
export { redactUrl } from './urls.js'
