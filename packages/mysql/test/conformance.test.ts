import { describeConformance } from '@txbox/conformance/vitest'
import { createConformanceTarget } from '../src/conformance-target.js'

// MariaDB (TXBOX_MYSQL_URL, or TXBOX_MYSQL_IMAGE in Docker) and MySQL 8 (TXBOX_MYSQL8_URL, or
// TXBOX_MYSQL8_IMAGE): the two families differ in collations (utf8mb4_nopad_bin against
// utf8mb4_0900_bin), error codes and locking, so each gets its own report.
describeConformance(createConformanceTarget())
describeConformance(createConformanceTarget({ name: 'mysql8', family: 'MySQL' }), { serverName: 'mysql8' })
