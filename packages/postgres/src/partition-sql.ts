/**
 * The statements of the time-partitioned layout (see `postgres-partitions.ts`), built from the
 * validated schema and prefix. Partition names and bounds come from the adapter's own clock
 * arithmetic, never from user text, so they are inlined where DDL takes no parameters.
 */
import { qualified } from './sql.js'

/** How the partitions of a table are cut: whole UTC days or whole UTC months. */
export type PartitionInterval = 'daily' | 'monthly'

/** The two tables the layout partitions, with the columns that decide where a row lives and when it is done. */
export interface PartitionedTableSpec {
  /** `outbox` or `inbox`, as in `<prefix>outbox`. */
  readonly name: 'outbox' | 'inbox'
  /** The partition key: set once at insert from the store's clock, never updated. */
  readonly key: 'enqueued_at' | 'received_at'
  /** The status a row reaches when nothing will happen to it any more. */
  readonly done: 'sent' | 'processed'
  /** When it reached it; a partition is retired only when every row is done before the cutoff. */
  readonly doneAt: 'sent_at' | 'processed_at'
  /** Every other status (the tables' CHECK constraints list them): one EXISTS each, each on its partial index. */
  readonly open: readonly string[]
}

export const OUTBOX_PARTITIONS: PartitionedTableSpec = {
  name: 'outbox',
  key: 'enqueued_at',
  done: 'sent',
  doneAt: 'sent_at',
  open: ['pending', 'publishing', 'failed'],
}

export const INBOX_PARTITIONS: PartitionedTableSpec = {
  name: 'inbox',
  key: 'received_at',
  done: 'processed',
  doneAt: 'processed_at',
  open: ['processing', 'failed'],
}

/** The partition holding what the table held when it was converted: (MINVALUE, legacy_until). */
export const CONVERTED_SUFFIX = 'pold'

/** A time partition is `<prefix><table>_p<yyyymmdd>` (daily) or `_p<yyyymm>` (monthly). */
export const DATED_SUFFIX = /^p(\d{4})(\d{2})(\d{2})?$/

/**
 * A partition taken out of the table, waiting for its ids to be forgotten and for DROP:
 * `_r` instead of `_p`. A maintenance run that dies halfway leaves it; the next one finishes.
 */
export const retiredName = (partition: string, table: string): string =>
  `${table}_r${partition.slice(table.length + 2)}`

/** A timestamptz literal that means the same instant whatever the session's TimeZone. */
export const instant = (date: Date): string => `'${date.toISOString()}'`

export interface PartitionSql {
  /** `<prefix>partitioning`: one row per partitioned table, read by every maintenance run. */
  readonly createLayoutTable: string
  /** $1 table name: the layout row, if the table was partitioned. */
  readonly layout: string
  readonly recordLayout: string
  readonly updateAhead: string
  /** $1 relation name: its kind (`r` table, `p` partitioned table), or none. */
  readonly relationKind: string
  /** Per table. */
  readonly table: (spec: PartitionedTableSpec) => TablePartitionSql
}

export interface TablePartitionSql {
  readonly parent: string
  readonly parentName: string
  readonly ids: string
  readonly defaultPartition: string
  readonly convertedName: string
  /** The attached partitions' names (default included). */
  readonly partitions: string
  /** Tables of this table's retired partitions (`_r...`), still to be finished. */
  readonly retired: string
  /** The converted table's indexes: name, definition, and the constraint that owns a unique one. */
  readonly indexes: string
  /** $1 cutoff: does the partition hold a row that is not done, or done at or after the cutoff? */
  readonly holdsLiveRows: (partition: string) => string
  /** `<prefix><table>_ids`: the event ids of every row of every partition. */
  readonly createIds: string
  /** The function and trigger that forget the ids of deleted rows in `<prefix><table>_ids`. */
  readonly idTriggers: readonly string[]
  /** $1 last id of the previous batch, $2 batch size: forgets one batch of a retired partition's ids. */
  readonly forgetRetiredIds: (retired: string) => string
}

export const partitionSql = (schema: string, prefix: string): PartitionSql => {
  const layoutTable = qualified(schema, `${prefix}partitioning`)
  return {
    createLayoutTable: `
      CREATE TABLE IF NOT EXISTS ${layoutTable} (
        table_name     text PRIMARY KEY,
        interval       text NOT NULL CHECK (interval IN ('daily', 'monthly')),
        ahead          integer NOT NULL,
        legacy_until   timestamptz NOT NULL,
        partitioned_at timestamptz NOT NULL
      )`,
    layout: `
      SELECT interval, ahead, (extract(epoch FROM legacy_until) * 1000)::float8 AS legacy_until
      FROM ${layoutTable} WHERE table_name = $1`,
    recordLayout: `
      INSERT INTO ${layoutTable} (table_name, interval, ahead, legacy_until, partitioned_at)
      VALUES ($1, $2, $3, $4, $5)`,
    updateAhead: `UPDATE ${layoutTable} SET ahead = $2 WHERE table_name = $1 AND ahead <> $2`,
    relationKind: `
      SELECT c.relkind FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = '${schema}' AND c.relname = $1`,
    table: (spec) => {
      const parentName = `${prefix}${spec.name}`
      const parent = qualified(schema, parentName)
      const ids = qualified(schema, `${parentName}_ids`)
      const forgetIds = qualified(schema, `${parentName}_forget_ids`)
      return {
        parent,
        parentName,
        ids,
        defaultPartition: `${parentName}_default`,
        convertedName: `${parentName}_${CONVERTED_SUFFIX}`,
        partitions: `
          SELECT c.relname AS name FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = '${parent}'::regclass`,
        // Names are [A-Za-z0-9_] only, so the prefix needs no escaping inside the pattern.
        retired: `
          SELECT c.relname AS name FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = '${schema}' AND c.relkind = 'r' AND NOT c.relispartition
            AND c.relname ~ '^${parentName}_r(old|[0-9]{6}|[0-9]{8})$'
          ORDER BY c.relname`,
        indexes: `
          SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisunique AS is_unique,
                 con.conname AS constraint_name
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
          WHERE i.indrelid = '${parent}'::regclass
          ORDER BY c.relname`,
        // Spelled status by status, so each EXISTS walks the partial index of its status
        // (claimable, failed, processing, sent/processed by time) instead of scanning the
        // partition: a retirement check costs a few index probes however many rows it holds.
        holdsLiveRows: (partition) => {
          const table = qualified(schema, partition)
          const open = spec.open.map((status) => `EXISTS (SELECT 1 FROM ${table} WHERE status = '${status}')`)
          const late = `EXISTS (SELECT 1 FROM ${table} WHERE status = '${spec.done}' AND ${spec.doneAt} >= $1)`
          return `SELECT ${[...open, late].join(' OR ')} AS live`
        },
        // Event-id uniqueness across partitions. A partitioned table's unique keys must hold
        // its partition key, so the id's key lives in this unpartitioned table: the store's
        // insert statements claim each id here first and insert only the rows whose id they
        // claimed (see duplicateIds in sql.ts), which waits for (and then yields to) a
        // concurrent inserter of the same id exactly as ON CONFLICT on the table did.
        createIds: `CREATE TABLE IF NOT EXISTS ${ids} (event_id text NOT NULL, CONSTRAINT "${parentName}_ids_pkey" PRIMARY KEY (event_id))`,
        idTriggers: [
          // A deleted row leaves no trace: its id may be enqueued (received) again. One
          // statement per DELETE, over its transition table, rather than a call per row.
          `CREATE OR REPLACE FUNCTION ${forgetIds}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM ${ids} i USING gone g WHERE i.event_id = g.event_id;
  RETURN NULL;
END
$fn$`,
          `DROP TRIGGER IF EXISTS "${parentName}_forget_ids" ON ${parent}`,
          `CREATE TRIGGER "${parentName}_forget_ids" AFTER DELETE ON ${parent}
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION ${forgetIds}()`,
        ],
        forgetRetiredIds: (retired) => `
          WITH batch AS (
            SELECT event_id FROM ${qualified(schema, retired)}
            WHERE event_id > $1 ORDER BY event_id LIMIT $2
          ), forgotten AS (
            DELETE FROM ${ids} i USING batch b WHERE i.event_id = b.event_id
          )
          SELECT max(event_id) AS last, count(*)::int AS count FROM batch`,
      }
    },
  }
}
