import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'

/** A free loopback port: bound by the OS, then released. */
export const freeLoopbackPort = async (): Promise<number> => {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/**
 * A server that "comes up later": a port on which nothing listens until `open()`, then
 * forwards every connection to `target` (one of the shared servers, which are never stopped).
 */
export class LateProxy {
  readonly port: number
  readonly #target: { host: string; port: number }
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined

  private constructor(port: number, target: { host: string; port: number }) {
    this.port = port
    this.#target = target
  }

  static async to(target: { host: string; port: number }): Promise<LateProxy> {
    return new LateProxy(await freeLoopbackPort(), target)
  }

  /** `url` with its host and port replaced by this proxy's. */
  rewrite(url: string): string {
    const parsed = new URL(url)
    parsed.hostname = '127.0.0.1'
    parsed.port = String(this.port)
    return parsed.toString()
  }

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = netConnect(this.#target.port, this.#target.host)
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
      }
      client.on('error', () => upstream.destroy())
      upstream.on('error', () => client.destroy())
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => resolve())
    })
    this.#server = server
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    const server = this.#server
    this.#server = undefined
    if (server) await new Promise((resolve) => server.close(resolve))
  }
}

/** The host and port of a URL (`new URL` reads single-host MongoDB URLs too). */
export const hostOf = (url: string): { host: string; port: number } => {
  const parsed = new URL(url)
  return { host: parsed.hostname, port: Number(parsed.port) }
}
