import { randomBytes } from 'node:crypto'

/** A fresh identifier-safe name (schema, table prefix, key prefix) for one namespace. */
export const uniqueName = (base: string): string =>
  `${base}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
