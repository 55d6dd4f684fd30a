export { ConnectionState } from './connection-state.js'
export {
  type DecodedHeaders,
  decodeNatsHeaders,
  encodeEventHeaders,
  MSG_ID,
  natsHeadersFor,
  RAW_HEADERS,
  RAW_HEADERS_BASE64,
} from './headers.js'
export {
  createJetStreamInboxSource,
  type JetStreamInboxSourceOptions,
  toInboxMessage,
} from './inbox-source.js'
export {
  createJetStreamPublisher,
  JetStreamPublishError,
  JetStreamPublisher,
  type JetStreamPublisherOptions,
  type PublishFailure,
} from './publisher.js'
export {
  type EnsureConsumerOptions,
  type EnsureStreamOptions,
  ensureDurableConsumer,
  ensureStream,
} from './streams.js'
