#!/usr/bin/env bash
# The txbox-relay container image as a user runs it: builds packages/relay/Dockerfile on the
# private engine (scripts/docker/engine.sh) with the local Node base (txbox-local/node:20 from
# scripts/docker/images.sh), then runs the container against the shared PostgreSQL (a schema
# of its own) and a private nats-server with a password (never the shared NATS), with a
# mounted config file holding a subject map and the secrets in mounted files (*_FILE):
#   - the container turns healthy (its HEALTHCHECK on /health) and drains a backlog to the
#     mapped subjects, the stored events keeping their own;
#   - `docker stop` while it drains a second backlog: exit code 0, "relay stopped" logged,
#     no event left `publishing` (the batch in flight was finished), and the stream holds
#     exactly the events marked sent.
# Any problem exits non-zero.
#
#   bash scripts/ci/relay-image.sh    (TXBOX_POSTGRES_URL from scripts/services.sh if unset)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
say() { printf '[relay-image] %s\n' "$*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}

[ -n "${TXBOX_POSTGRES_URL:-}" ] || eval "$(bash scripts/services.sh env --export)"
[ -n "${TXBOX_POSTGRES_URL:-}" ] || fail 'TXBOX_POSTGRES_URL is not set'
command -v nats-server >/dev/null || fail 'nats-server is not installed (scripts/services.sh up installs it)'

bash scripts/docker/engine.sh up
eval "$(bash scripts/docker/engine.sh env --export)"
node_image=txbox-local/node:20
# Built by images.sh (the testcontainers step builds it first in CI); only when missing here,
# so this check does not wait for the lock of another image build.
docker image inspect "$node_image" >/dev/null 2>&1 || bash scripts/docker/images.sh build node
# The classic builder: this machine's docker CLI has no buildx plugin.
export DOCKER_BUILDKIT=0

tag=txbox-local/relay:ci
work=$(mktemp -d "${TMPDIR:-/tmp}/txbox-relay-image.XXXXXX")
container=txbox-relay-ci-$$
schema=relay_image_$$
nats_pid=
cleanup() {
  # Keeps the script's own status: under set -e a failing cleanup command would replace it.
  local status=$?
  set +e
  docker rm -f "$container" >/dev/null 2>&1
  if [ -n "$nats_pid" ]; then kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null; fi
  SCHEMA=$schema node --input-type=module - <<'EOF' || true
import { createRequire } from 'node:module'
const pg = createRequire(`${process.cwd()}/packages/relay/package.json`)('pg')
const pool = new pg.Pool({ connectionString: process.env.TXBOX_POSTGRES_URL, max: 1 })
await pool.query(`DROP SCHEMA IF EXISTS "${process.env.SCHEMA}" CASCADE`)
await pool.end()
EOF
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }

# The build stage installs from the npm registry: containers get no DNS from the engine, so
# the registry's address is resolved here and handed over as a hosts entry (host network).
registry=$(npm config get registry 2>/dev/null | sed -E 's#^[a-z]+://([^/:]+).*#\1#')
registry_ip=$(getent ahostsv4 "$registry" | awk 'NR == 1 { print $1 }')
[ -n "$registry_ip" ] || fail "cannot resolve the npm registry $registry"

# The context: the files git knows (tracked or new, not ignored), as they are in the tree.
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do [ -f "$file" ] && printf '%s\0' "$file"; done |
  tar --null -T - -cf "$work/context.tar"
# The registry may be reached through a proxy whose CA this machine trusts: the build gets it too.
ca_args=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  cp "$NODE_EXTRA_CA_CERTS" "$work/build-ca.crt"
  tar -rf "$work/context.tar" -C "$work" build-ca.crt
  ca_args=(--build-arg NODE_EXTRA_CA_CERTS=/src/build-ca.crt)
fi
say "building $tag from packages/relay/Dockerfile on $node_image (log: $work/build.log)"
started=$(date +%s)
# The build stage first, under a tag: the classic builder leaves it untagged otherwise, and
# an `docker image prune` elsewhere on the engine (images.sh runs one) could remove it before
# the final stage copies from it. The second build takes it from the cache.
for target in "--target build -t $tag-build" "-t $tag"; do
  # shellcheck disable=SC2086 # two words each, on purpose
  if ! nice -n 10 docker build --network host --add-host "$registry:$registry_ip" "${ca_args[@]}" \
    --build-arg NODE_IMAGE="$node_image" -f packages/relay/Dockerfile $target - <"$work/context.tar" >>"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    fail "docker build $target failed"
  fi
done
say "built in $(($(date +%s) - started)) s; $(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
[ "$(docker image inspect --format '{{.Config.User}}' "$tag")" = 10001:10001 ] || fail 'the image does not run as user 10001'

nats_port=$(free_port)
http_port=$(free_port)
mkdir -p "$work/js" "$work/config" "$work/secrets"
printf 'authorization { user: relay, password: "image-pw" }\n' >"$work/nats.conf"
nats-server -js -sd "$work/js" -a 127.0.0.1 -p "$nats_port" -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 100); do grep -q 'Server is ready' "$work/nats.log" && break; sleep 0.1; done
grep -q 'Server is ready' "$work/nats.log" || fail "the private nats-server did not start: $(cat "$work/nats.log")"

# Node helpers run from the workspace (the relay package's drivers and openStore).
export SCHEMA=$schema NATS_URL=nats://127.0.0.1:$nats_port
enqueue() {
  COUNT=$1 FIRST=$2 node --input-type=module - <<'EOF'
import { openStore } from '@txbox/relay'
const store = await openStore({ kind: 'postgres', url: process.env.TXBOX_POSTGRES_URL, schema: process.env.SCHEMA, migrate: true })
const first = Number(process.env.FIRST)
const subjects = (index) => (index % 3 === 0 ? 'user.created' : index % 3 === 1 ? `order.n${index % 7}` : 'audit.login.ok')
for (let start = 0; start < Number(process.env.COUNT); start += 1000) {
  const events = []
  for (let index = first + start; index < first + Math.min(Number(process.env.COUNT), start + 1000); index++)
    events.push({ eventId: `image-${index}`, subject: subjects(index), payload: JSON.stringify({ index, pad: 'x'.repeat(200) }) })
  await store.outbox.findOrCreateMany(events)
}
await store.close()
EOF
}
# Prints "<sent> <publishing> <pending> <stream messages> <mapped ok>".
state() {
  node --input-type=module - <<'EOF'
import { createRequire } from 'node:module'
import { openStore } from '@txbox/relay'
const { connect } = createRequire(`${process.cwd()}/packages/relay/package.json`)('nats')
const store = await openStore({ kind: 'postgres', url: process.env.TXBOX_POSTGRES_URL, schema: process.env.SCHEMA })
const counts = await store.outbox.getCountByStatus()
const stored = await store.outbox.get('image-0')
await store.close()
const nc = await connect({ servers: process.env.NATS_URL, user: 'relay', pass: 'image-pw' })
let messages = 0
let mapped = false
try {
  const info = await (await nc.jetstreamManager()).streams.info('IMAGE', { subjects_filter: '>' })
  messages = info.state.messages
  const subjects = Object.keys(info.state.subjects ?? {})
  mapped = subjects.length > 0 && subjects.every((subject) => /^(production\.users\.created|production\.orders\.n\d|prod\.audit\.login\.ok)$/.test(subject))
} catch {}
await nc.close()
console.log(counts.sent, counts.publishing, counts.pending, messages, mapped && stored?.subject === 'user.created')
EOF
}

first_backlog=3000
enqueue "$first_backlog" 0
cat >"$work/config/relay.yaml" <<EOF
store: postgres
schema: $schema
nats: nats://127.0.0.1:$nats_port
nats-user: relay
stream: IMAGE
stream-subjects: [production.>, prod.>]
subject-map:
  - { from: user.created, to: production.users.created }
  - { from: 'order.*', to: 'production.orders.*' }
  - { from: 'audit.>', to: 'prod.audit.>' }
batch-size: 200
log-level: info
EOF
printf '%s\n' "$TXBOX_POSTGRES_URL" >"$work/secrets/url"
printf 'image-pw\n' >"$work/secrets/nats-password"
chmod -R a+rX "$work/config" "$work/secrets"

say "running $tag (host network; /health on $http_port; NATS on $nats_port)"
docker run -d --name "$container" --network host \
  -v "$work/config:/etc/txbox-relay:ro" -v "$work/secrets:/run/secrets:ro" \
  -e TXBOX_RELAY_CONFIG=/etc/txbox-relay/relay.yaml \
  -e TXBOX_RELAY_URL_FILE=/run/secrets/url \
  -e TXBOX_RELAY_NATS_PASSWORD_FILE=/run/secrets/nats-password \
  -e TXBOX_RELAY_HTTP_PORT="$http_port" \
  -e TXBOX_RELAY_WORKER_ID=relay-image-ci \
  --health-interval 1s --health-start-period 1s "$tag" >/dev/null

health=
for _ in $(seq 120); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$container")
  [ "$health" = healthy ] && break
  [ "$(docker inspect --format '{{.State.Running}}' "$container")" = true ] || break
  sleep 0.5
done
[ "$health" = healthy ] || { docker logs "$container" >&2; fail "the container is not healthy ($health)"; }
say 'healthy'

read -r sent publishing pending messages mapped < <(state)
for _ in $(seq 120); do
  [ "$sent" = "$first_backlog" ] && [ "$messages" = "$first_backlog" ] && break
  sleep 0.5
  read -r sent publishing pending messages mapped < <(state)
done
[ "$sent" = "$first_backlog" ] && [ "$messages" = "$first_backlog" ] ||
  { docker logs "$container" >&2; fail "backlog not drained: $sent sent, $messages in the stream of $first_backlog"; }
[ "$mapped" = true ] || fail 'the stream holds subjects outside the subject map, or the stored subject changed'
say "drained $first_backlog events to the mapped subjects"

# A second backlog, and docker stop while it drains.
second_backlog=30000
enqueue "$second_backlog" "$first_backlog"
for _ in $(seq 200); do
  read -r sent publishing pending messages mapped < <(state)
  [ "$sent" -gt "$first_backlog" ] && break
  sleep 0.1
done
say "docker stop with $sent sent, $pending pending, $publishing publishing"
docker stop -t 30 "$container" >/dev/null
exit_code=$(docker inspect --format '{{.State.ExitCode}}' "$container")
docker logs "$container" >"$work/relay.log" 2>&1
[ "$exit_code" = 0 ] || { tail -n 30 "$work/relay.log" >&2; fail "exit code $exit_code after docker stop"; }
grep -q '"msg":"signal received; draining"' "$work/relay.log" || fail 'the relay did not see SIGTERM'
grep -q '"msg":"relay stopped"' "$work/relay.log" || fail 'no "relay stopped" line'
read -r sent publishing pending messages mapped < <(state)
[ "$publishing" = 0 ] || fail "$publishing events left publishing after the drain"
[ "$sent" = "$messages" ] || fail "$sent events marked sent but $messages in the stream"
say "stopped cleanly (exit 0): $sent sent = $messages in the stream, $pending pending, 0 publishing"
say 'ok'
