import { describe, expect, it } from 'vitest'
import { runOnDriver, type TransactionDriver } from '../src/index.js'

/** A driver that records every step; `fail` names the steps that throw. */
const recordingDriver = (fail: readonly string[] = []) => {
  const steps: string[] = []
  const step = async (name: string) => {
    steps.push(name)
    if (fail.includes(name)) throw new Error(`${name} failed`)
  }
  const driver: TransactionDriver<{ id: number }> = {
    begin: async () => {
      await step('begin')
      return { id: 1 }
    },
    commit: () => step('commit'),
    rollback: () => step('rollback'),
    release: (_tx, broken) => {
      steps.push(broken === undefined ? 'release' : `release broken: ${broken.message}`)
    },
  }
  return { driver, steps }
}

describe('runOnDriver', () => {
  it('commits and releases once, answering what fn answered', async () => {
    const { driver, steps } = recordingDriver()
    expect(await runOnDriver(driver, async (tx) => tx.id + 1)).toBe(2)
    expect(steps).toEqual(['begin', 'commit', 'release'])
  })

  it('rolls back instead of committing with rollback: true', async () => {
    const { driver, steps } = recordingDriver()
    await runOnDriver(driver, async () => 'x', { rollback: true })
    expect(steps).toEqual(['begin', 'rollback', 'release'])
  })

  it("rolls back when fn throws and rethrows fn's error", async () => {
    const { driver, steps } = recordingDriver()
    await expect(
      runOnDriver(driver, async () => {
        throw new Error('business rule')
      }),
    ).rejects.toThrow('business rule')
    expect(steps).toEqual(['begin', 'rollback', 'release'])
  })

  it('a failed COMMIT is rolled back and rethrown; a failed ROLLBACK releases the connection as broken', async () => {
    const commitFails = recordingDriver(['commit'])
    await expect(runOnDriver(commitFails.driver, async () => 1)).rejects.toThrow('commit failed')
    expect(commitFails.steps).toEqual(['begin', 'commit', 'rollback', 'release'])

    const bothFail = recordingDriver(['commit', 'rollback'])
    await expect(runOnDriver(bothFail.driver, async () => 1)).rejects.toThrow('commit failed')
    expect(bothFail.steps).toEqual(['begin', 'commit', 'rollback', 'release broken: rollback failed'])

    const rollbackAfterThrow = recordingDriver(['rollback'])
    await expect(
      runOnDriver(rollbackAfterThrow.driver, async () => {
        throw new Error('business rule')
      }),
    ).rejects.toThrow('business rule')
    expect(rollbackAfterThrow.steps).toEqual(['begin', 'rollback', 'release broken: rollback failed'])
  })

  it('does not release what it never began', async () => {
    const { driver, steps } = recordingDriver(['begin'])
    await expect(runOnDriver(driver, async () => 1)).rejects.toThrow('begin failed')
    expect(steps).toEqual(['begin'])
  })
})
