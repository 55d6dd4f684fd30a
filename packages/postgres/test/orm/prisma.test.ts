import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { PrismaPg } from '@prisma/adapter-pg'
import { StorageError } from '@txbox/core'
import { build } from 'esbuild'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../../src/index.js'
import { prismaTransaction } from '../../src/orm/prisma.js'
import { freshSchema, noServer, url } from '../helpers.js'
import { describeOrmIntegration } from './integration-cases.js'

/** The part of a generated client the test uses (no models: raw SQL only). */
interface PrismaLike {
  $transaction<T>(fn: (tx: PrismaTx) => Promise<T>): Promise<T>
  $disconnect(): Promise<void>
}
interface PrismaTx {
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>
}

// Prisma 7 generates its client as TypeScript (`prisma generate`), here into an ignored folder
// inside the package so that the client's `@prisma/client/runtime` import resolves, then
// bundled to one ES module that Node loads as it is.
const packageRoot = new URL('../../', import.meta.url).pathname
let generated: Promise<{ dir: string; PrismaClient: new (options: unknown) => PrismaLike }> | undefined

const generateClient = () => {
  generated ??= (async () => {
    const cache = join(packageRoot, 'node_modules', '.cache')
    await mkdir(cache, { recursive: true })
    const dir = await mkdtemp(join(cache, 'txbox-prisma-'))
    await writeFile(
      join(dir, 'schema.prisma'),
      'generator client {\n  provider = "prisma-client"\n  output   = "./generated"\n}\n\n' +
        'datasource db {\n  provider = "postgresql"\n}\n',
    )
    const cli = createRequire(import.meta.url).resolve('prisma/build/index.js')
    await promisify(execFile)(process.execPath, [cli, 'generate', '--schema', 'schema.prisma'], {
      cwd: dir,
      // `generate` never runs the schema engine (that is migrate's), but the CLI downloads it
      // first unless a binary is named: a machine without access to binaries.prisma.sh still generates.
      env: {
        ...process.env,
        PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? '/bin/true',
      },
    })
    const outfile = join(dir, 'client.mjs')
    await build({
      entryPoints: [join(dir, 'generated', 'client.ts')],
      bundle: true,
      format: 'esm',
      platform: 'node',
      packages: 'external',
      outfile,
      logLevel: 'silent',
    })
    const module = (await import(pathToFileURL(outfile).href)) as {
      PrismaClient: new (options: unknown) => PrismaLike
    }
    return { dir, PrismaClient: module.PrismaClient }
  })()
  return generated
}

afterAll(async () => {
  if (generated !== undefined) await rm((await generated).dir, { recursive: true, force: true })
})

describeOrmIntegration<PrismaTx>(
  'Prisma 7 interactive transactions, @prisma/adapter-pg (@txbox/postgres/prisma)',
  async (databaseUrl) => {
    const { PrismaClient } = await generateClient()
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl, max: 2 }) })
    return {
      transaction: (fn) => prisma.$transaction(fn),
      insertOrder: async (tx, schema, id) => {
        await tx.$executeRawUnsafe(`INSERT INTO "${schema}".orders (id) VALUES ($1)`, id)
      },
      handle: (tx) => prismaTransaction(tx),
      handleOfRoot: () => prismaTransaction(prisma),
      close: () => prisma.$disconnect(),
    }
  },
)

describe.skipIf(noServer)('Prisma: a server error keeps its classification', () => {
  it('a missing table through a Prisma transaction is a StorageError of reason schema, naming its SQLSTATE and migrate()', async () => {
    const { PrismaClient } = await generateClient()
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url as string, max: 1 }) })
    const pool = new pg.Pool({ connectionString: url, max: 1 })
    // Never migrated: its tables do not exist.
    const store = createPostgresStore({ pool, schema: freshSchema() })
    try {
      const failure = await prisma
        .$transaction((tx) =>
          store.outbox.findOrCreate(
            { eventId: 'e', subject: 's', payload: '{}' },
            { tx: prismaTransaction(tx) },
          ),
        )
        .catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(StorageError)
      expect((failure as StorageError).reason).toBe('schema')
      expect((failure as StorageError).message).toMatch(/SQLSTATE 42P01.*did you run migrate\(\)/)
    } finally {
      await prisma.$disconnect()
      await pool.end()
    }
  })
})
