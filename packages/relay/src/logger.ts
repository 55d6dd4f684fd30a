import type { TxboxLogger } from '@txbox/core'
import { LOG_LEVELS, type LogLevel } from './config.js'

/** A {@link TxboxLogger} writing one JSON object per line (time, level, msg, fields). */
export const jsonLogger = (level: LogLevel, out: { write(line: string): unknown }): Required<TxboxLogger> => {
  const threshold = LOG_LEVELS.indexOf(level)
  const at =
    (name: LogLevel) =>
    (msg: string, fields: Record<string, unknown> = {}): void => {
      if (LOG_LEVELS.indexOf(name) < threshold) return
      out.write(`${JSON.stringify({ time: new Date().toISOString(), level: name, msg, ...fields })}\n`)
    }
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}
