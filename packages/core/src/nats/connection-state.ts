import { Events, type NatsConnection } from 'nats'

/**
 * Whether a NATS connection is usable now. nats.js reconnects on its own; this follows its
 * status events so `health()` can answer synchronously. One tracker per connection.
 */
export class ConnectionState {
  static readonly #trackers = new WeakMap<NatsConnection, ConnectionState>()
  readonly #connection: NatsConnection
  #connected = true
  #detail: string | undefined

  private constructor(connection: NatsConnection) {
    this.#connection = connection
    void this.#follow()
  }

  /** The tracker of `connection` (created on first use). */
  static of(connection: NatsConnection): ConnectionState {
    let state = ConnectionState.#trackers.get(connection)
    if (!state) {
      state = new ConnectionState(connection)
      ConnectionState.#trackers.set(connection, state)
    }
    return state
  }

  async #follow(): Promise<void> {
    try {
      for await (const status of this.#connection.status()) {
        if (status.type === Events.Disconnect) {
          this.#connected = false
          this.#detail = `disconnected from ${String(status.data)}`
        } else if (status.type === Events.Reconnect) {
          this.#connected = true
          this.#detail = undefined
        }
      }
    } catch {
      // The status iterator ends (or fails) when the connection closes; isClosed() covers it.
    }
  }

  health(): { ok: boolean; detail?: string | undefined } {
    if (this.#connection.isClosed()) return { ok: false, detail: 'the NATS connection is closed' }
    return this.#connected ? { ok: true } : { ok: false, detail: this.#detail }
  }
}
