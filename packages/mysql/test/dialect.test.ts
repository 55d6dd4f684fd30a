import { describe, expect, it } from 'vitest'
import { parseDialect } from '../src/dialect.js'

describe('parseDialect', () => {
  it('reads MariaDB from its version string and picks the NO PAD binary collation', () => {
    expect(parseDialect('10.11.6-MariaDB-0+deb12u1')).toEqual({
      name: 'mariadb',
      version: '10.11.6',
      label: 'MariaDB 10.11.6',
      idCollation: 'utf8mb4_nopad_bin',
    })
  })

  it('reads MySQL 8 and picks utf8mb4_0900_bin', () => {
    expect(parseDialect('8.0.36')).toMatchObject({
      name: 'mysql',
      label: 'MySQL 8.0.36',
      idCollation: 'utf8mb4_0900_bin',
    })
    expect(parseDialect('8.4.2-commercial')).toMatchObject({ name: 'mysql', idCollation: 'utf8mb4_0900_bin' })
    expect(parseDialect('8.0.16')).toMatchObject({ idCollation: 'utf8mb4_bin' })
  })

  it('refuses servers without SKIP LOCKED', () => {
    expect(() => parseDialect('10.5.22-MariaDB')).toThrow(/10\.6\+/)
    expect(() => parseDialect('5.7.44')).toThrow(/8\.0\.1\+/)
    expect(() => parseDialect('garbage')).toThrow(/cannot read/)
  })
})
