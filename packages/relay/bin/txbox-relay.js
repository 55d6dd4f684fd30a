#!/usr/bin/env node
import { runRelayCli } from '../dist/cli.js'

// Exit explicitly once the relay has drained and closed what it opened: a connection attempt
// still pending at SIGTERM (NATS or a database that never answered) must not keep it alive.
process.exit(await runRelayCli(process.argv.slice(2)))
