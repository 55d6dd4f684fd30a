#!/usr/bin/env node
import { runRelayCli } from '../dist/cli.js'

process.exitCode = await runRelayCli(process.argv.slice(2))
