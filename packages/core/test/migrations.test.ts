import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  applyMigrations,
  applyMigrationsSync,
  loadMigrations,
  ManualClock,
  type Migration,
  type MigrationHistory,
  renderMigration,
  versionsThrough,
} from '../src/index.js'

const folderWith = (files: Record<string, string>): URL => {
  const dir = mkdtempSync(join(tmpdir(), 'txbox-migrations-'))
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body)
  return pathToFileURL(dir)
}

/** A history kept in memory, with a lock that records whether a step ran outside it. */
class RecordingHistory implements MigrationHistory {
  readonly applied = new Map<number, Date>()
  readonly ran: string[] = []
  #locked = false
  failOn: number | undefined

  async locked<T>(apply: () => Promise<T>): Promise<T> {
    this.#locked = true
    try {
      return await apply()
    } finally {
      this.#locked = false
    }
  }
  async appliedVersions() {
    return this.applied.keys()
  }
  async apply(migration: Migration) {
    if (!this.#locked) throw new Error('applied outside the lock')
    if (migration.version === this.failOn) throw new Error(`step ${migration.version} failed`)
    this.ran.push(migration.name)
  }
  async record(migration: Migration, appliedAt: Date) {
    this.applied.set(migration.version, appliedAt)
  }
}

describe('migrations', () => {
  it('loads NNNN_name files in version order and ignores other files', () => {
    const folder = folderWith({
      '0002_inbox_id_only.sql': 'two',
      '0001_initial.sql': 'one',
      'README.md': 'docs',
      '001_old_scheme.sql': 'not four digits',
    })
    expect(loadMigrations(folder)).toEqual([
      { version: 1, name: 'initial', body: 'one' },
      { version: 2, name: 'inbox_id_only', body: 'two' },
    ])
  })

  it('refuses a gap or a repeated version: a lost file must not go unnoticed', () => {
    expect(() => loadMigrations(folderWith({ '0001_a.sql': '', '0003_c.sql': '' }))).toThrow(
      /without gaps or repeats; found version 3 at position 2/,
    )
    expect(() => loadMigrations(folderWith({ '0001_a.sql': '', '0001_b.json': '' }))).toThrow(/repeats/)
  })

  it('pairs each down file with its up file, and keeps the 1..n rule for the ups alone', () => {
    const folder = folderWith({
      '0001_initial.sql': 'create',
      '0001_initial.down.sql': 'drop',
      '0002_inbox_id_only.sql': 'alter',
    })
    const [first, second] = loadMigrations(folder)
    expect(first).toEqual({ version: 1, name: 'initial', body: 'create', down: 'drop' })
    expect(second).toEqual({ version: 2, name: 'inbox_id_only', body: 'alter' })
    expect(second !== undefined && 'down' in second).toBe(false)
  })

  it('refuses a down file without its up file, under another name, or twice', () => {
    expect(() => loadMigrations(folderWith({ '0001_a.sql': '', '0002_b.down.sql': '' }))).toThrow(
      /0002_b\.down\.sql .* undoes a version that has no up file/,
    )
    expect(() => loadMigrations(folderWith({ '0001_a.sql': '', '0001_b.down.sql': '' }))).toThrow(
      /0001_b\.down\.sql .* must be named after its up file: 0001_a\.down\.<ext>/,
    )
    expect(() =>
      loadMigrations(folderWith({ '0001_a.sql': '', '0001_a.down.sql': '', '0001_a.down.json': '' })),
    ).toThrow(/both undo version 1/)
  })

  it('reads a folder URL with or without its trailing slash, and ignores sub-folders', () => {
    const folder = folderWith({ '0001_a.json': '{}' })
    mkdirSync(new URL(`${folder.href}/0002_not_a_file.json/`), { recursive: true })
    const bare = new URL(folder.href.replace(/\/$/, ''))
    expect(loadMigrations(bare)).toEqual([{ version: 1, name: 'a', body: '{}' }])
    expect(loadMigrations(new URL(`${folder.href}/`))).toHaveLength(1)
  })

  it('reads the versions a highest-version history stands for', () => {
    expect(versionsThrough(0)).toEqual([])
    expect(versionsThrough(3)).toEqual([1, 2, 3])
  })

  it('renders every placeholder and refuses one without a value', () => {
    expect(renderMigration('CREATE TABLE {{prefix}}outbox -- {{prefix}}', { prefix: 'app_' })).toBe(
      'CREATE TABLE app_outbox -- app_',
    )
    expect(() => renderMigration('{{schema}}.{{prefix}}outbox', { prefix: 'app_' })).toThrow(
      'migration placeholder {{schema}} has no value',
    )
  })

  it('applies only the unrecorded steps, in order, under the lock, recording each', async () => {
    const clock = new ManualClock(new Date('2026-05-01T00:00:00Z'))
    const history = new RecordingHistory()
    history.applied.set(1, new Date(0))
    const steps: Migration[] = [
      { version: 1, name: 'one', body: '' },
      { version: 2, name: 'two', body: '' },
      { version: 3, name: 'three', body: '' },
    ]
    expect(await applyMigrations(history, steps, clock.now)).toEqual([2, 3])
    expect(history.ran).toEqual(['two', 'three'])
    expect(history.applied.get(3)).toEqual(clock.now())
    // Again: nothing to do.
    expect(await applyMigrations(history, steps, clock.now)).toEqual([])
  })

  it('stops at a failing step without recording it, so the next run retries it', async () => {
    const history = new RecordingHistory()
    history.failOn = 2
    const steps: Migration[] = [
      { version: 1, name: 'one', body: '' },
      { version: 2, name: 'two', body: '' },
      { version: 3, name: 'three', body: '' },
    ]
    await expect(applyMigrations(history, steps, () => new Date())).rejects.toThrow('step 2 failed')
    expect([...history.applied.keys()]).toEqual([1])
    history.failOn = undefined
    expect(await applyMigrations(history, steps, () => new Date())).toEqual([2, 3])
  })

  it('the synchronous variant applies the same steps without ever yielding to the event loop', () => {
    const applied = new Set([1])
    const ran: string[] = []
    let turnEnded = false
    queueMicrotask(() => {
      turnEnded = true
    })
    const steps: Migration[] = [
      { version: 1, name: 'one', body: '' },
      { version: 2, name: 'two', body: '' },
    ]
    const versions = applyMigrationsSync(
      {
        locked: (apply) => apply(),
        appliedVersions: () => applied,
        apply: (step) => {
          if (turnEnded) throw new Error('yielded inside the lock')
          ran.push(step.name)
        },
        record: (step) => applied.add(step.version),
      },
      steps,
      () => new Date(),
    )
    expect(versions).toEqual([2])
    expect(ran).toEqual(['two'])
  })
})
