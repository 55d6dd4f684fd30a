import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { PrismaMariaDb } from '@prisma/adapter-mariadb'
import { StorageError } from '@txbox/core'
import { build } from 'esbuild'
import { afterAll, describe, expect, it } from 'vitest'
import { createMySqlStore } from '../../src/index.js'
import { prismaTransaction } from '../../src/orm/prisma.js'
import { freshPrefix, MYSQL_URL, makePool, SKIP, SKIP_REASON } from '../helpers.js'
import { describeOrmIntegration } from './harness.js'

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
        'datasource db {\n  provider = "mysql"\n}\n',
    )
    const cli = createRequire(import.meta.url).resolve('prisma/build/index.js')
    await promisify(execFile)(process.execPath, [cli, 'generate', '--schema', 'schema.prisma'], {
      cwd: dir,
      // `generate` never runs the schema engine (migrate does), but the CLI downloads it first
      // unless a binary is named: a machine without access to binaries.prisma.sh still generates.
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

describeOrmIntegration('Prisma 7 (@prisma/adapter-mariadb)', async ({ url, table }) => {
  const { PrismaClient } = await generateClient()
  const mariadbUrl = new URL(url)
  mariadbUrl.protocol = 'mariadb:'
  mariadbUrl.searchParams.set('connectionLimit', '2')
  const prisma = new PrismaClient({ adapter: new PrismaMariaDb(mariadbUrl.toString()) })
  return {
    transaction: (fn) =>
      prisma.$transaction((tx) =>
        fn({
          insert: async (id) => {
            await tx.$executeRawUnsafe(`INSERT INTO \`${table}\` (id) VALUES (?)`, id)
          },
          tx: prismaTransaction(tx),
        }),
      ),
    ended: async () => {
      let kept: PrismaTx | undefined
      await prisma.$transaction(async (tx) => {
        kept = tx
      })
      return prismaTransaction(kept as PrismaTx)
    },
    wrongInputs: [
      ['the PrismaClient itself', () => prismaTransaction(prisma)],
      ['a plain object', () => prismaTransaction({})],
    ],
    close: () => prisma.$disconnect(),
  }
})

describe.skipIf(SKIP)(`Prisma's server errors${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  it('are classified by their server error number, as through mysql2: a missing table is schema, with the migrate hint', async () => {
    const { PrismaClient } = await generateClient()
    const url = new URL(MYSQL_URL as string)
    url.protocol = 'mariadb:'
    const prisma = new PrismaClient({ adapter: new PrismaMariaDb(url.toString()) })
    const pool = makePool({ connectionLimit: 2 })
    // Never migrated: the tables do not exist.
    const store = createMySqlStore({ pool, tablePrefix: freshPrefix() })
    try {
      const error = await prisma
        .$transaction((tx) =>
          store.outbox.findOrCreate(
            { eventId: 'e', subject: 's', payload: 'p' },
            { tx: prismaTransaction(tx) },
          ),
        )
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ reason: 'schema', retryable: false, operation: 'outbox.findOrCreate' })
      expect((error as Error).message).toMatch(/errno 1146.*did you run migrate\(\)\?/)
    } finally {
      await prisma.$disconnect()
      await pool.end()
    }
  })
})
