/**
 * What a caller passed where a handle (a connection, a transaction, an ORM object) was
 * expected, for an error message: its class (`a Knex`, `a PoolClient`), or its kind
 * (`a plain object`, `a string`, `null`). Never its contents, which may hold credentials.
 */
export const describeHandle = (value: unknown): string => {
  if (value === null || value === undefined) return String(value)
  if (typeof value !== 'object' && typeof value !== 'function') return `a ${typeof value}`
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name
  if (typeof name === 'string' && name !== '' && name !== 'Object' && name !== 'Function') return `a ${name}`
  return typeof value === 'function' ? 'a function' : 'a plain object'
}
