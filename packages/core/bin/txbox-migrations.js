#!/usr/bin/env node
import { runMigrationsCli } from '../dist/migrations-cli.js'

process.exitCode = await runMigrationsCli(process.argv.slice(2))
