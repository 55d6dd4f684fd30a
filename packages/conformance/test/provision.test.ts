import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  CONTAINER_PRESETS,
  containerImage,
  dockerConfigured,
  imageVariable,
  provisionServer,
  requireAll,
  testcontainersOff,
  urlVariable,
} from '../src/index.js'

// "No Docker" is said explicitly (docker: false), never inferred from this machine, which
// may well have an engine.
const noDocker = { env: { HOME: '/nonexistent-home' }, docker: false } as const

describe('provisionServer', () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  it('prefers an explicit URL, then TXBOX_<ENGINE>_URL', async () => {
    const env = { ...noDocker.env, TXBOX_POSTGRES_URL: 'postgres://from-env/db' }
    const explicit = await provisionServer('postgres', { url: 'postgres://explicit/db', env, docker: false })
    expect('connection' in explicit && explicit.connection).toEqual({
      engine: 'postgres',
      url: 'postgres://explicit/db',
      source: 'option',
    })
    const fromEnv = await provisionServer('postgres', { env, docker: false })
    expect('connection' in fromEnv && fromEnv.connection).toEqual({
      engine: 'postgres',
      url: 'postgres://from-env/db',
      source: 'env',
    })
  })

  it('reads a variant target from its own variable (TXBOX_MYSQL8_URL), not the engine one', async () => {
    const env = { TXBOX_MYSQL_URL: 'mysql://mariadb/db', TXBOX_MYSQL8_URL: 'mysql://mysql8/db' }
    const found = await provisionServer('mysql', { env, name: 'mysql8', docker: false })
    expect('connection' in found && found.connection.url).toBe('mysql://mysql8/db')
    const missing = await provisionServer('mysql', {
      env: { TXBOX_MYSQL_URL: 'x' },
      name: 'mysql8',
      docker: false,
    })
    expect('notRun' in missing && missing.notRun).toMatch(/set TXBOX_MYSQL8_URL/)
  })

  it('reports the target as not run, with what to do, when there is no URL and no Docker engine', async () => {
    const found = await provisionServer('mongodb', noDocker)
    expect('notRun' in found && found.notRun).toMatch(/TXBOX_MONGODB_URL/)
    expect('notRun' in found && found.notRun).toMatch(/mongodb:\/\/127\.0\.0\.1:27017\/db/)
    expect('notRun' in found && found.notRun).toMatch(/Docker engine reachable \(DOCKER_HOST\)/)
    // A user's install has no scripts/ folder: never send them to one.
    expect('notRun' in found && found.notRun).not.toMatch(/scripts\//)
  })

  it('starts no container when TXBOX_TESTCONTAINERS=0, even with a Docker engine configured', async () => {
    const env = { TXBOX_TESTCONTAINERS: '0', DOCKER_HOST: 'tcp://127.0.0.1:1' }
    expect(testcontainersOff(env)).toBe(true)
    expect(testcontainersOff({ TXBOX_TESTCONTAINERS: 'false' })).toBe(true)
    expect(testcontainersOff({})).toBe(false)
    const found = await provisionServer('redis', { env, docker: true })
    expect('notRun' in found && found.notRun).toMatch(
      /starting one in Docker is turned off \(TXBOX_TESTCONTAINERS=0\)/,
    )
  })

  it('tries testcontainers when a Docker engine is configured, and says why it could not start one', async () => {
    // testcontainers reads the process environment: point it at a port nothing listens on.
    vi.stubEnv('DOCKER_HOST', 'tcp://127.0.0.1:1')
    vi.stubEnv('TESTCONTAINERS_HOST_OVERRIDE', '')
    const found = await provisionServer('redis', { env: { ...process.env, TXBOX_REDIS_URL: '' } })
    expect('notRun' in found && found.notRun).toMatch(/testcontainers could not start one/)
  }, 60_000)

  it('names one variable per engine and reads TXBOX_REQUIRE_ALL', () => {
    expect(urlVariable('dynamodb')).toBe('TXBOX_DYNAMODB_URL')
    expect(imageVariable('mysql8')).toBe('TXBOX_MYSQL8_IMAGE')
    expect(requireAll({ TXBOX_REQUIRE_ALL: '1' })).toBe(true)
    expect(requireAll({ TXBOX_REQUIRE_ALL: 'true' })).toBe(true)
    expect(requireAll({})).toBe(false)
  })
})

describe('dockerConfigured', () => {
  const nothing = () => false

  it('honours DOCKER_HOST before any file', () => {
    expect(dockerConfigured({ DOCKER_HOST: 'unix:///somewhere/docker.sock' }, nothing)).toBe(true)
    expect(dockerConfigured({ HOME: '/h' }, nothing)).toBe(false)
  })

  it('finds the system socket, Docker Desktop and rootless sockets', () => {
    const only = (path: string) => (candidate: string) => candidate === path
    expect(dockerConfigured({ HOME: '/h' }, only('/var/run/docker.sock'))).toBe(true)
    expect(dockerConfigured({ HOME: '/h' }, only('/h/.docker/run/docker.sock'))).toBe(true)
    expect(
      dockerConfigured({ HOME: '/h', XDG_RUNTIME_DIR: '/run/user/1000' }, only('/run/user/1000/docker.sock')),
    ).toBe(true)
    expect(dockerConfigured({ HOME: '/h' }, only('/run/user/1000/docker.sock'))).toBe(false)
  })

  it('reads docker.host or tc.host from ~/.testcontainers.properties, as testcontainers does', () => {
    const home = mkdtempSync(join(tmpdir(), 'txbox-tc-'))
    try {
      const file = join(home, '.testcontainers.properties')
      writeFileSync(file, '# nothing set\nryuk.disabled=true\n')
      expect(dockerConfigured({ HOME: home })).toBe(false)
      writeFileSync(file, 'docker.host=unix:///private/docker.sock\n')
      expect(dockerConfigured({ HOME: home })).toBe(true)
      writeFileSync(file, 'tc.host=tcp://127.0.0.1:2375\n')
      expect(dockerConfigured({ HOME: home })).toBe(true)
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  })
})

describe('container images', () => {
  it('takes --image, then TXBOX_<NAME>_IMAGE, then the variant default, then the official image', () => {
    const env = { TXBOX_MYSQL_IMAGE: 'local/mariadb:1', TXBOX_MYSQL8_IMAGE: 'local/mysql:8' }
    expect(containerImage('mysql', { image: 'given:1' }, env)).toBe('given:1')
    expect(containerImage('mysql', {}, env)).toBe('local/mariadb:1')
    expect(containerImage('mysql', { name: 'mysql8' }, env)).toBe('local/mysql:8')
    expect(containerImage('mysql', { name: 'mysql8' }, {})).toBe('mysql:8.0')
    expect(containerImage('mysql', {}, {})).toBe('mariadb:10.11')
    expect(containerImage('redis', {}, {})).toBe(CONTAINER_PRESETS.redis.image)
  })
})

describe('container presets', () => {
  it('runs MongoDB as a single-node replica set, so transactional enqueue can be certified', () => {
    const mongo = CONTAINER_PRESETS.mongodb
    expect(mongo.image).toMatch(/^mongo:\d/)
    expect(mongo.command).toEqual(expect.arrayContaining(['--replSet', 'rs0']))
    expect(mongo.init?.join(' ')).toMatch(/rs\.initiate\(\{_id:'rs0'/)
    // rs.initiate returns before the election: the start waits until the node is primary.
    expect(mongo.initDone?.join(' ')).toMatch(/isWritablePrimary/)
    // The member's advertised host is not reachable from the host side: connect directly.
    expect(mongo.url('localhost', 32768)).toBe('mongodb://localhost:32768/txbox?directConnection=true')
  })

  it('goes on without a replica set on a MongoDB-wire server that has none, but not on other failures', () => {
    const unsupported = CONTAINER_PRESETS.mongodb.initUnsupported
    expect(unsupported?.(127, 'exec: "mongosh": executable file not found in $PATH')).toMatch(/no mongosh/)
    expect(unsupported?.(1, "MongoServerError: no such command: 'replSetInitiate'")).toMatch(
      /refuses replica-set commands/,
    )
    expect(unsupported?.(1, 'MongoNetworkError: connect ECONNREFUSED 127.0.0.1:27017')).toBeUndefined()
  })

  it('tells MySQL and MariaDB ready only once the server listens on 3306, and skips name resolution', () => {
    const mysql = CONTAINER_PRESETS.mysql
    const ready = mysql.readyLog as RegExp
    // MySQL: one line; MariaDB: "ready for connections." then the Version line with the port.
    expect(
      ready.test(
        "/usr/sbin/mysqld: ready for connections. Version: '8.4.2'  socket: '/var/run/mysqld/mysqld.sock'  port: 3306  MySQL Community Server - GPL.",
      ),
    ).toBe(true)
    expect(
      ready.test(
        "Version: '10.11.6-MariaDB-0+deb12u1'  socket: '/run/mysqld/mysqld.sock'  port: 3306  Debian 12",
      ),
    ).toBe(true)
    // The entrypoints' first server, without networking, and MySQL's X Protocol port.
    expect(
      ready.test("Version: '10.11.6-MariaDB'  socket: '/run/mysqld/mysqld.sock'  port: 0  Debian 12"),
    ).toBe(false)
    expect(ready.test("X Plugin ready for connections. Bind-address: '::' port: 33060")).toBe(false)
    expect(mysql.command).toContain('--skip-name-resolve')
  })

  it('waits for a real DynamoDB request, not only the log line printed before Jetty listens', () => {
    expect(CONTAINER_PRESETS.dynamodb.probe).toBeTypeOf('function')
  })

  it('gives every engine an image, the port it maps and a URL of the driver format', () => {
    expect(CONTAINER_PRESETS.postgres.url('h', 1)).toBe('postgres://txbox:txbox@h:1/txbox')
    expect(CONTAINER_PRESETS.mysql.url('h', 2)).toBe('mysql://txbox:txbox@h:2/txbox')
    expect(CONTAINER_PRESETS.redis.url('h', 3)).toBe('redis://h:3')
    expect(CONTAINER_PRESETS.nats.command).toContain('-js')
    expect(CONTAINER_PRESETS.dynamodb.command).toContain('-inMemory')
    expect(CONTAINER_PRESETS.dynamodb.url('h', 4)).toBe('http://h:4')
    for (const preset of Object.values(CONTAINER_PRESETS)) expect(preset.readyLog).toBeInstanceOf(RegExp)
  })
})
