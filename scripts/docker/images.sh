#!/usr/bin/env bash
# scripts/docker/images.sh — builds, on the private engine of scripts/docker/engine.sh, the
# images the testcontainers path runs when no image registry is reachable. Nothing is pulled:
# the base is a Debian rootfs made by debootstrap and `docker import`ed, and each image adds
# Debian packages or this project's own builds to it.
#
#   scripts/docker/images.sh build [names...]   build what is missing or out of date (default: all)
#   scripts/docker/images.sh list               tag, state and recipe hash of each image
#   eval "$(scripts/docker/images.sh env --export)"   TXBOX_<ENGINE>_IMAGE for the suite
#
# Tags (txbox-local/..., never an official name an image is not):
#   txbox-local/debian:bookworm        the base (debootstrap --variant=minbase)
#   txbox-local/postgres:15            Debian postgresql 15        TXBOX_POSTGRES_IMAGE
#   txbox-local/mariadb:10.11          Debian mariadb-server 10.11 TXBOX_MYSQL_IMAGE
#   txbox-local/mysql:8.0.31           Oracle's generic build, from the Maven Central jar of
#                                      scripts/services/mysql8.sh  TXBOX_MYSQL8_IMAGE
#   txbox-local/redis:7.0              Debian redis-server         TXBOX_REDIS_IMAGE
#   txbox-local/nats:2.9               Debian nats-server (-js)    TXBOX_NATS_IMAGE
#   txbox-local/ferretdb:1.24.2        tools/ferretdb (as services.sh builds it) on a PostgreSQL 15
#                                      in the same container
#                                                                  TXBOX_MONGODB_IMAGE
#   txbox-local/dynamodb-local:2.6.1   the jars services.sh resolves from Maven Central
#                                                                  TXBOX_DYNAMODB_IMAGE
#   txbox-local/node:20                Debian + this machine's Node.js 20 binary (and npm): the
#                                      base image for Dockerfiles of our own (the relay's)
#
# Each image carries a label txbox.recipe, a hash of what it is built from (the base image's
# recipe, the Dockerfile and entrypoint written here, the files copied in); a build whose hash
# matches is skipped. The
# rootfs tarball and the build contexts are cached in ${TXBOX_IMAGES_DIR:-~/.cache/txbox/images}.
# Builds run one at a time, under nice, with the host's network (--network host: apt inside
# the build reaches the same Debian mirror as the host, and the engine's bridge stays without
# any route out).
set -uo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
IMAGES_DIR=${TXBOX_IMAGES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/txbox/images}
SUITE=bookworm
BASE=txbox-local/debian:$SUITE
# The mirror apt uses on this machine, else Debian's own; TXBOX_DEBIAN_MIRROR overrides.
DEBIAN_MIRROR=${TXBOX_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NICE=(nice -n 10)
# The engine gives containers no DNS (engine.sh): the mirror's address is resolved here and
# handed to the build as a hosts entry.
MIRROR_HOST=${DEBIAN_MIRROR#*://}
MIRROR_HOST=${MIRROR_HOST%%/*}
MIRROR_HOST=${MIRROR_HOST%:*}
MIRROR_HOST_ARGS=()
if [[ ! $MIRROR_HOST =~ ^[0-9.]+$ ]]; then
  MIRROR_IP=$(getent ahostsv4 "$MIRROR_HOST" | awk 'NR == 1 { print $1 }')
  [ -n "$MIRROR_IP" ] && MIRROR_HOST_ARGS=(--add-host "$MIRROR_HOST:$MIRROR_IP")
fi

ALL_IMAGES=(postgres mariadb mysql8 redis nats ferretdb dynamodb node)

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

eval "$(bash "$ROOT_DIR/scripts/docker/engine.sh" env --export)"
# The classic builder: this machine's docker CLI has no buildx plugin.
export DOCKER_BUILDKIT=0

tag_of() {
  case $1 in
    base) echo "$BASE" ;;
    postgres) echo txbox-local/postgres:15 ;;
    mariadb) echo txbox-local/mariadb:10.11 ;;
    mysql8) echo "txbox-local/mysql:$(mysql8_version)" ;;
    redis) echo txbox-local/redis:7.0 ;;
    nats) echo txbox-local/nats:2.9 ;;
    ferretdb) echo txbox-local/ferretdb:1.24.2 ;;
    dynamodb) echo "txbox-local/dynamodb-local:$(dynamodb_version)" ;;
    node) echo txbox-local/node:20 ;;
    *) die "unknown image '$1' (known: ${ALL_IMAGES[*]})" ;;
  esac
}

# The variable the conformance suite reads each image from.
variable_of() {
  case $1 in
    postgres) echo TXBOX_POSTGRES_IMAGE ;;
    mariadb) echo TXBOX_MYSQL_IMAGE ;;
    mysql8) echo TXBOX_MYSQL8_IMAGE ;;
    redis) echo TXBOX_REDIS_IMAGE ;;
    nats) echo TXBOX_NATS_IMAGE ;;
    ferretdb) echo TXBOX_MONGODB_IMAGE ;;
    dynamodb) echo TXBOX_DYNAMODB_IMAGE ;;
    *) return 1 ;;
  esac
}

mysql8_version() { sed -n 's/^MYSQL8_VERSION=//p' "$ROOT_DIR/scripts/services/mysql8.sh"; }
dynamodb_version() {
  sed -n 's:.*<dynamodb-local.version>\(.*\)</dynamodb-local.version>.*:\1:p' "$ROOT_DIR/tools/dynamodb-local/pom.xml"
}

# The services.sh functions that build FerretDB and resolve DynamoDB Local and MySQL 8, with
# the settings they expect (the same cache, so a machine builds each once for both paths).
load_service_builders() {
  [ -n "${SERVICE_BUILDERS_LOADED:-}" ] && return 0
  STATE_DIR=${TXBOX_SERVICES_DIR:-$HOME/.cache/txbox/services}
  CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/txbox
  LOG_DIR=$STATE_DIR/logs
  RUN_DIR=$STATE_DIR/run
  # shellcheck disable=SC2034 # read by the sourced files
  HOST=127.0.0.1
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$CACHE_DIR"
  # shellcheck source=scripts/services/lib.sh
  . "$ROOT_DIR/scripts/services/lib.sh"
  # shellcheck source=/dev/null
  . "$ROOT_DIR/scripts/services/mongodb.sh"
  # shellcheck source=/dev/null
  . "$ROOT_DIR/scripts/services/dynamodb.sh"
  # shellcheck source=/dev/null
  . "$ROOT_DIR/scripts/services/mysql8.sh"
  # services.sh's own, used by dynamodb.sh to keep the jars a running server loads
  running_pid() {
    local pid
    pid=$(head -n1 "$RUN_DIR/$1.pid" 2>/dev/null) && pid_alive "$pid" "$(hook_process "$1")" && echo "$pid"
  }
  hook_process() { "${1//-/_}_process"; }
  # lib.sh brought its own log and die: keep ours, which name this script
  log() { printf '[images] %s\n' "$*" >&2; }
  die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }
  SERVICE_BUILDERS_LOADED=1
}

# link_in SRC... DEST: hard links where the cache and the context share a file system (no copy
# of hundreds of MB at every run), a copy elsewhere.
link_in() { cp -al "$@" 2>/dev/null || cp -a "$@"; }

image_recipe() { docker image inspect --format '{{ index .Config.Labels "txbox.recipe" }}' "$1" 2>/dev/null; }

# ------------------------------------------------------------------ base ---

build_base() {
  local tarball=$IMAGES_DIR/debian-$SUITE-minbase.tar recipe t0 root
  recipe=$(printf '%s %s minbase\n' "$SUITE" "$DEBIAN_MIRROR" | sha256sum | cut -c1-12)
  if [ "$(image_recipe "$BASE")" = "$recipe" ]; then
    log "$BASE: up to date"
    return 0
  fi
  command -v debootstrap >/dev/null || {
    [ "$(id -u)" = 0 ] || die "debootstrap is missing and only root can install it"
    {
      DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          -o DPkg::Lock::Timeout=600 debootstrap
    } >"$IMAGES_DIR/apt.log" 2>&1 || die "apt-get install debootstrap failed (log: $IMAGES_DIR/apt.log)"
  }
  if [ ! -s "$tarball" ] || [ "$(cat "$tarball.recipe" 2>/dev/null)" != "$recipe" ]; then
    t0=$(now)
    root=$IMAGES_DIR/rootfs.tmp
    rm -rf "$root"
    log "$BASE: debootstrap --variant=minbase $SUITE from $DEBIAN_MIRROR (log: $IMAGES_DIR/debootstrap.log)"
    "${NICE[@]}" debootstrap --variant=minbase "$SUITE" "$root" "$DEBIAN_MIRROR" \
      >"$IMAGES_DIR/debootstrap.log" 2>&1 || { tail -n 20 "$IMAGES_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    # apt inside the images: the same mirror, no recommends, no caches kept
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$DEBIAN_MIRROR" "$SUITE" "$DEBIAN_MIRROR" "$SUITE" \
      >"$root/etc/apt/sources.list"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90txbox"
    # the image's daemons are started by its entrypoint, never by a package's maintainer script
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.tmp" . && mv -f "$tarball.tmp" "$tarball" && echo "$recipe" >"$tarball.recipe"
    rm -rf "$root"
    log "$BASE: rootfs made in $(since "$t0")"
  fi
  t0=$(now)
  docker import -c "LABEL txbox.recipe=$recipe" -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' \
    "$tarball" "$BASE" >/dev/null || die "docker import failed"
  log "$BASE: imported in $(since "$t0")"
}

# ---------------------------------------------------------------- images ---

# build_image NAME: writes NAME's context (Dockerfile and files) into a fresh directory and
# builds it unless an image with the same recipe exists.
build_image() {
  local name=$1 tag ctx recipe t0 blog
  tag=$(tag_of "$name")
  ctx=$IMAGES_DIR/context/$name
  rm -rf "$ctx" && mkdir -p "$ctx"
  "context_$name" "$ctx" || die "$tag: could not prepare its build context"
  recipe=$( (
    image_recipe "$BASE"
    # small files by content; the large ones copied in (binaries, jars) by size and time, which
    # their hard links share with the cache they come from
    cd "$ctx" && find . -type f -size -1M | LC_ALL=C sort | xargs -r sha256sum
    find . -type f -size +1M -printf '%P %s %T@\n' | LC_ALL=C sort
  ) | sha256sum | cut -c1-12)
  if [ "$(image_recipe "$tag")" = "$recipe" ]; then
    log "$tag: up to date"
    return 0
  fi
  blog=$IMAGES_DIR/build-$name.log
  t0=$(now)
  log "$tag: building (log: $blog)"
  if ! "${NICE[@]}" docker build --force-rm --network host "${MIRROR_HOST_ARGS[@]}" --label "txbox.recipe=$recipe" -t "$tag" "$ctx" >"$blog" 2>&1; then
    tail -n 25 "$blog" >&2
    die "$tag: build failed"
  fi
  log "$tag: built in $(since "$t0")"
}

# An entrypoint that creates the role and database from the variables the official image
# reads (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB), on a server it starts and stops once,
# then runs the server with the container's arguments as its options.
context_postgres() {
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q postgresql-15 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:\$PATH PGDATA=/var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/
EXPOSE 5432
ENTRYPOINT ["entrypoint.sh"]
EOF
  cat >"$1/entrypoint.sh" <<'EOF'
#!/bin/bash
set -euo pipefail
user=${POSTGRES_USER:-postgres} password=${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required} db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
mkdir -p "$PGDATA" /var/run/postgresql && chown postgres:postgres "$PGDATA" /var/run/postgresql
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp) && printf '%s\n' "$password" >"$pwfile" && chown postgres "$pwfile"
  as_pg initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  if [ "$db" != postgres ]; then PGPASSWORD=$password as_pg psql -q -U "$user" -d postgres -c "CREATE DATABASE \"$db\""; fi
  as_pg pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" "$@"
EOF
  chmod +x "$1/entrypoint.sh"
}

# MariaDB and MySQL share one entrypoint: MYSQL_ROOT_PASSWORD, MYSQL_USER, MYSQL_PASSWORD,
# MYSQL_DATABASE (the MARIADB_* names too) applied by an --init-file, which the server runs
# before it takes connections (MySQL's generic build has no client to run it with); then the
# container's arguments as the server's options. skip-name-resolve: the engine's containers
# have no DNS, and a reverse lookup per connection would wait for it.
mysql_entrypoint() {
  local server=$1 install=$2
  cat <<EOF
#!/bin/bash
set -euo pipefail
datadir=/var/lib/mysql
root_password=\${MYSQL_ROOT_PASSWORD:-\${MARIADB_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD is required}}
user=\${MYSQL_USER:-\${MARIADB_USER:-}} password=\${MYSQL_PASSWORD:-\${MARIADB_PASSWORD:-}} db=\${MYSQL_DATABASE:-\${MARIADB_DATABASE:-}}
mkdir -p "\$datadir" /run/mysqld && chown mysql:mysql "\$datadir" /run/mysqld
if [ ! -d "\$datadir/mysql" ]; then
  $install
fi
init=/run/mysqld/init.sql
{
  echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '\$root_password';"
  echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '\$root_password';"
  echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  if [ -n "\$db" ]; then echo "CREATE DATABASE IF NOT EXISTS \\\`\$db\\\`;"; fi
  if [ -n "\$user" ]; then
    echo "CREATE USER IF NOT EXISTS '\$user'@'%' IDENTIFIED BY '\$password';"
    if [ -n "\$db" ]; then echo "GRANT ALL PRIVILEGES ON \\\`\$db\\\`.* TO '\$user'@'%';"; fi
  fi
} >"\$init"
chown mysql:mysql "\$init"
exec $server --user=mysql --datadir="\$datadir" --socket=/run/mysqld/mysqld.sock --skip-name-resolve \\
  --bind-address=0.0.0.0 --port=3306 --init-file="\$init" "\$@"
EOF
}

context_mariadb() {
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q mariadb-server && rm -rf /var/lib/apt/lists/* /var/lib/mysql/*
COPY entrypoint.sh /usr/local/bin/
EXPOSE 3306
ENTRYPOINT ["entrypoint.sh"]
EOF
  # root@localhost with an empty password until the init file sets one
  mysql_entrypoint mariadbd 'mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve >/dev/null' >"$1/entrypoint.sh"
  chmod +x "$1/entrypoint.sh"
}

# MySQL 8 from the same Maven Central jar as the native server (scripts/services/mysql8.sh):
# its bin/ (mysqld alone), lib/ and share/, on libaio and libnuma from Debian.
context_mysql8() {
  load_service_builders
  resolve_mysql8 || return 1
  local home
  home=$(mysql8_home)
  mkdir -p "$1/mysql"
  link_in "$home/bin" "$home/lib" "$home/share" "$1/mysql/"
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q libaio1 libnuma1 && rm -rf /var/lib/apt/lists/* \\
  && groupadd -r mysql && useradd -r -g mysql -d /var/lib/mysql mysql
COPY mysql /opt/mysql
COPY entrypoint.sh /usr/local/bin/
ENV PATH=/opt/mysql/bin:\$PATH
EXPOSE 3306
ENTRYPOINT ["entrypoint.sh"]
EOF
  # root@localhost without a password until the init file sets one; no X Protocol port
  mysql_entrypoint 'mysqld --mysqlx=OFF' 'mysqld --initialize-insecure --user=mysql --datadir="$datadir" --basedir=/opt/mysql' >"$1/entrypoint.sh"
  chmod +x "$1/entrypoint.sh"
}

# protected-mode off as the official image has it: clients come through docker-proxy, from
# the bridge's address, not from loopback.
context_redis() {
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q redis-server && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/
EXPOSE 6379
ENTRYPOINT ["entrypoint.sh"]
CMD ["redis-server"]
EOF
  cat >"$1/entrypoint.sh" <<'EOF'
#!/bin/sh
if [ "$1" = redis-server ]; then shift; exec redis-server --protected-mode no --bind '* -::*' "$@"; fi
exec "$@"
EOF
  chmod +x "$1/entrypoint.sh"
}

context_nats() {
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q nats-server && rm -rf /var/lib/apt/lists/*
WORKDIR /data
EXPOSE 4222 8222
ENTRYPOINT ["nats-server", "-sd", "/data/jetstream"]
CMD ["-js"]
EOF
}

# The wrapper services.sh builds (static, CGO off), on the PostgreSQL backend as the native
# path runs it: a PostgreSQL 15 inside the same container, on 127.0.0.1 only, trust auth. (On
# its SQLite backend FerretDB v1 hangs in the suite's paging case: the pool fills up.) The
# arguments of a mongod (the preset's --replSet, --bind_ip_all) mean nothing to it and are
# dropped: FerretDB v1 has no replica set, which the suite reports as a capability.
context_ferretdb() {
  load_service_builders
  build_ferretdb || return 1
  link_in "$(ferretdb_bin)" "$1/ferretdb"
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q postgresql-15 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:\$PATH
COPY ferretdb entrypoint.sh /usr/local/bin/
EXPOSE 27017
ENTRYPOINT ["entrypoint.sh"]
EOF
  cat >"$1/entrypoint.sh" <<'EOF'
#!/bin/bash
set -euo pipefail
[ $# -gt 0 ] && echo "entrypoint: FerretDB takes no mongod options; ignoring: $*" >&2
data=/var/lib/postgresql/data
mkdir -p "$data" /var/run/postgresql && chown postgres:postgres "$data" /var/run/postgresql
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$data/PG_VERSION" ]; then
  as_pg initdb -D "$data" -U ferretdb -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
as_pg pg_ctl -D "$data" -l /var/lib/postgresql/postgres.log -w \
  -o "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
as_pg psql -q -h 127.0.0.1 -U ferretdb -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" | grep -q 1 ||
  as_pg createdb -h 127.0.0.1 -U ferretdb ferretdb
exec ferretdb serve -listen 0.0.0.0:27017 -handler postgresql \
  -postgresql-url postgres://ferretdb@127.0.0.1:5432/ferretdb -log-level "${FERRETDB_LOG_LEVEL:-warn}"
EOF
  chmod +x "$1/entrypoint.sh"
}

# The jars services.sh resolves; run by DynamoDB Local's own ServerRunner (all interfaces, as
# a container needs). A leading `-jar DynamoDBLocal.jar`, as the official image's command
# has it, is dropped.
context_dynamodb() {
  load_service_builders
  resolve_dynamodb || return 1
  link_in "$(dynamodb_home)/lib" "$1/lib"
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q openjdk-17-jre-headless && rm -rf /var/lib/apt/lists/*
COPY lib /opt/dynamodb-local/lib
COPY entrypoint.sh /usr/local/bin/
WORKDIR /opt/dynamodb-local
EXPOSE 8000
ENTRYPOINT ["entrypoint.sh"]
CMD ["-inMemory", "-sharedDb"]
EOF
  cat >"$1/entrypoint.sh" <<'EOF'
#!/bin/sh
if [ "$1" = -jar ]; then shift 2; fi
exec java -Xms64m -Xmx1g -XX:+UseSerialGC -Djava.awt.headless=true \
  -Djava.library.path=/opt/dynamodb-local/lib -cp '/opt/dynamodb-local/lib/*' \
  com.amazonaws.services.dynamodbv2.local.main.ServerRunner -disableTelemetry "$@"
EOF
  chmod +x "$1/entrypoint.sh"
}

# This machine's Node.js 20 (the binary and npm), on the Debian base.
context_node() {
  local node major prefix
  node=$(command -v node) || { log "node not found"; return 1; }
  node=$(readlink -f "$node")
  major=$("$node" -p 'process.versions.node.split(".")[0]')
  [ "$major" = 20 ] || { log "this machine's Node.js is $("$node" --version), not 20"; return 1; }
  prefix=$(dirname "$(dirname "$node")")
  mkdir -p "$1/node/bin" "$1/node/lib/node_modules"
  link_in "$node" "$1/node/bin/node"
  if [ -d "$prefix/lib/node_modules/npm" ]; then link_in "$prefix/lib/node_modules/npm" "$1/node/lib/node_modules/"; fi
  cat >"$1/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update -q && apt-get install -y -q ca-certificates && rm -rf /var/lib/apt/lists/*
COPY node /usr/local/
RUN if [ -d /usr/local/lib/node_modules/npm ]; then ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx; fi \\
  && node --version
CMD ["node"]
EOF
}

# --------------------------------------------------------------- commands ---

cmd_build() {
  local names=("$@") n t_all
  [ ${#names[@]} -gt 0 ] || names=("${ALL_IMAGES[@]}")
  for n in "${names[@]}"; do tag_of "$n" >/dev/null; done
  mkdir -p "$IMAGES_DIR"
  exec 8>"$IMAGES_DIR/.lock"
  flock -w 3600 8 || die "could not take $IMAGES_DIR/.lock"
  docker version >/dev/null 2>&1 || die "the engine does not answer: run scripts/docker/engine.sh up"
  t_all=$(now)
  build_base
  for n in "${names[@]}"; do build_image "$n"; done
  # the images a rebuild replaced
  docker image prune -f >/dev/null
  log "images ready in $(since "$t_all"): $(for n in "${names[@]}"; do printf '%s ' "$(tag_of "$n")"; done)"
}

cmd_list() {
  local n tag
  for n in base "${ALL_IMAGES[@]}"; do
    tag=$(tag_of "$n")
    printf '%-36s %s\n' "$tag" "$(image_recipe "$tag" || echo missing)"
  done
}

cmd_env() {
  local prefix="" n var
  case ${1:-} in
    --export) prefix="export " ;;
    "") ;;
    *) die "usage: $0 env [--export]" ;;
  esac
  for n in "${ALL_IMAGES[@]}"; do
    var=$(variable_of "$n") && echo "${prefix}$var=$(tag_of "$n")"
  done
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  list) cmd_list ;;
  env) shift; cmd_env "$@" ;;
  *) echo "usage: $0 build [names...] | list | env [--export]" >&2; exit 2 ;;
esac
