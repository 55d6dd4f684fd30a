#!/usr/bin/env node
// Writes the package.json of the relay image's app (run in the Dockerfile's build stage,
// from the repository root, after `pnpm pack` put the txbox tarballs in TARBALLS):
// the txbox packages from those tarballs, as a user installs them, and each driver at the
// exact version the workspace builds and tests the relay with.
//
//   node packages/relay/docker/image-app.mjs <tarballs dir> > /app/package.json
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const tarballs = process.argv[2]
if (!tarballs) throw new Error('usage: image-app.mjs <tarballs dir>')

// The server stores: SQLite (a local file and a native module) is left out of the image.
const PACKAGES = ['core', 'relay', 'postgres', 'mysql', 'mongodb', 'redis', 'dynamodb']
const DRIVERS = [
  'nats',
  'prom-client',
  'pg',
  'mysql2',
  'mongodb',
  'ioredis',
  '@aws-sdk/client-dynamodb',
  '@aws-sdk/lib-dynamodb',
]

const files = readdirSync(tarballs)
const dependencies = {}
for (const name of PACKAGES) {
  const file = files.find((candidate) => new RegExp(`^txbox-${name}-\\d.*\\.tgz$`).test(candidate))
  if (!file) throw new Error(`no tarball of @txbox/${name} in ${tarballs} (${files.join(', ')})`)
  dependencies[`@txbox/${name}`] = `file:${join(tarballs, file)}`
}
for (const driver of DRIVERS) {
  const manifest = join('packages/relay/node_modules', driver, 'package.json')
  dependencies[driver] = JSON.parse(readFileSync(manifest, 'utf8')).version
}
process.stdout.write(
  `${JSON.stringify({ name: 'txbox-relay-image', private: true, dependencies }, null, 2)}\n`,
)
