import { describe, expect, it } from 'vitest'
import {
  CONTAINER_PRESETS,
  dockerConfigured,
  provisionServer,
  requireAll,
  urlVariable,
} from '../src/index.js'

const noDocker = { HOME: '/nonexistent-home' }

describe('provisionServer', () => {
  it('prefers an explicit URL, then TXBOX_<ENGINE>_URL', async () => {
    const env = { ...noDocker, TXBOX_POSTGRES_URL: 'postgres://from-env/db' }
    const explicit = await provisionServer('postgres', { url: 'postgres://explicit/db', env })
    expect('connection' in explicit && explicit.connection).toEqual({
      engine: 'postgres',
      url: 'postgres://explicit/db',
      source: 'option',
    })
    const fromEnv = await provisionServer('postgres', { env })
    expect('connection' in fromEnv && fromEnv.connection).toEqual({
      engine: 'postgres',
      url: 'postgres://from-env/db',
      source: 'env',
    })
  })

  it('reports the target as not run, with what to do, when there is no URL and no Docker engine', async () => {
    const found = await provisionServer('mongodb', { env: noDocker })
    expect('notRun' in found && found.notRun).toMatch(/TXBOX_MONGODB_URL/)
    expect('notRun' in found && found.notRun).toMatch(/mongodb:\/\/127\.0\.0\.1:27017\/db/)
    expect('notRun' in found && found.notRun).toMatch(/Docker engine reachable/)
    // A user's install has no scripts/ folder: never send them to one.
    expect('notRun' in found && found.notRun).not.toMatch(/scripts\//)
  })

  it('tries testcontainers when a Docker engine is configured, and says why it could not start one', async () => {
    // A DOCKER_HOST that nothing listens on: testcontainers fails, the reason is kept.
    const found = await provisionServer('redis', {
      env: { DOCKER_HOST: 'tcp://127.0.0.1:1', HOME: '/nonexistent-home' },
    })
    expect(dockerConfigured({ DOCKER_HOST: 'tcp://127.0.0.1:1' })).toBe(true)
    expect('notRun' in found && found.notRun).toMatch(/testcontainers could not start one/)
  }, 60_000)

  it('names one variable per engine and reads TXBOX_REQUIRE_ALL', () => {
    expect(urlVariable('dynamodb')).toBe('TXBOX_DYNAMODB_URL')
    expect(requireAll({ TXBOX_REQUIRE_ALL: '1' })).toBe(true)
    expect(requireAll({ TXBOX_REQUIRE_ALL: 'true' })).toBe(true)
    expect(requireAll({})).toBe(false)
  })
})

describe('container presets', () => {
  it('runs MongoDB as a single-node replica set, so transactional enqueue can be certified', () => {
    const mongo = CONTAINER_PRESETS.mongodb
    expect(mongo.image).toMatch(/^mongo:\d/)
    expect(mongo.command).toEqual(expect.arrayContaining(['--replSet', 'rs0']))
    expect(mongo.init?.join(' ')).toMatch(/rs\.initiate\(\{_id:'rs0'/)
    // The member's advertised host is not reachable from the host side: connect directly.
    expect(mongo.url('localhost', 32768)).toBe('mongodb://localhost:32768/txbox?directConnection=true')
  })

  it('gives every engine an official image, the port it maps and a URL of the driver format', () => {
    expect(CONTAINER_PRESETS.postgres.url('h', 1)).toBe('postgres://txbox:txbox@h:1/txbox')
    expect(CONTAINER_PRESETS.mysql.image).toMatch(/^mysql:8/)
    expect(CONTAINER_PRESETS.mysql.url('h', 2)).toBe('mysql://txbox:txbox@h:2/txbox')
    expect(CONTAINER_PRESETS.redis.url('h', 3)).toBe('redis://h:3')
    expect(CONTAINER_PRESETS.nats.command).toContain('-js')
    expect(CONTAINER_PRESETS.dynamodb.command).toContain('-inMemory')
    expect(CONTAINER_PRESETS.dynamodb.url('h', 4)).toBe('http://h:4')
    for (const preset of Object.values(CONTAINER_PRESETS)) expect(preset.readyLog).toBeInstanceOf(RegExp)
  })
})
