#!/usr/bin/env bash
# scripts/docker/conformance.sh — the whole conformance suite of every adapter with a server,
# through testcontainers: the private engine (engine.sh), the local images (images.sh), and
# no TXBOX_*_URL, so that every server is a container started by the suite itself. Reports go
# to ${TXBOX_REPORT_DIR:-reports/conformance-testcontainers}/<target>.json, each naming its
# image and server version; a summary line per target is printed at the end.
#
#   bash scripts/docker/conformance.sh            engine up, images built or reused, suite run
#
# Ryuk (testcontainers' reaper) has no image here (no registry, and its module is not served
# by the Go proxy this machine reaches): it is disabled, and the suite stops its containers
# itself (after each file, and on SIGINT/SIGTERM). Whatever a killed run leaves behind is
# removed before the next one (containers labelled with an owner pid that is gone).
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"

stamp() { date +%s; }
t0=$(stamp)
bash scripts/docker/engine.sh up
t_engine=$(stamp)
bash scripts/docker/images.sh build
t_images=$(stamp)

eval "$(bash scripts/docker/engine.sh env --export)"
eval "$(bash scripts/docker/images.sh env --export)"
export TESTCONTAINERS_RYUK_DISABLED=true
# Containers of a killed run: the suite labels each with its process's pid; one whose process
# is gone is left over (a container another run still uses is not touched).
while read -r id pid; do
  [ -n "$id" ] || continue
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "[docker] removing container $id, left behind by process $pid"
    docker rm -f "$id" >/dev/null
  fi
done < <(docker ps -a --filter label=org.txbox.owner-pid --format '{{.ID}} {{.Label "org.txbox.owner-pid"}}')

# Only the containers: no URL may leak in from the native path.
for var in $(compgen -e | grep -E '^TXBOX_.*_URL$|^TXBOX_REDIS_CLUSTER_NODES$' || true); do unset "$var"; done
export TXBOX_REQUIRE_ALL=1
export TXBOX_REPORT_DIR=${TXBOX_REPORT_DIR_TESTCONTAINERS:-$ROOT_DIR/reports/conformance-testcontainers}
rm -rf "$TXBOX_REPORT_DIR"

projects=(postgres mysql mongodb redis dynamodb)
files=()
args=()
for p in "${projects[@]}"; do
  args+=(--project "$p")
  files+=("packages/$p/test/conformance.test.ts")
done
# and the container code itself on this engine: signals, DynamoDB's readiness
args+=(--project conformance)
files+=(packages/conformance/test/containers.test.ts)
status=0
pnpm vitest run "${args[@]}" "${files[@]}" || status=$?
t_suite=$(stamp)

node scripts/conformance-summary.mjs "$TXBOX_REPORT_DIR" || status=1
# The suite's processes have exited: a container whose owner is gone was left behind.
left=0
while read -r id pid; do
  [ -n "$id" ] || continue
  kill -0 "$pid" 2>/dev/null || { echo "[docker] container $id was left running by process $pid"; left=$((left + 1)); }
done < <(docker ps --filter label=org.txbox.owner-pid --format '{{.ID}} {{.Label "org.txbox.owner-pid"}}')
echo "[docker] containers left behind by the suite: $left"
[ "$left" = 0 ] || status=1
echo "[docker] times: engine $((t_engine - t0))s, images $((t_images - t_engine))s, suite $((t_suite - t_images))s"
exit "$status"
