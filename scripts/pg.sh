#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and local trials: a temp directory, a loopback port,
# run as an unprivileged user. Nothing system-wide is touched (the package is installed if
# missing, but its own cluster is never started: install-deps.sh installs with RUNLEVEL=1).
#   ./scripts/pg.sh start [DIR]   start (DIR default: a new temp dir); prints the URL on stdout
#   ./scripts/pg.sh stop DIR      stop it and delete DIR
#   ./scripts/pg.sh url DIR       print the URL of a running cluster
#   ./scripts/pg.sh down DIR      stop the server, keep the data (an outage, for tests)
#   ./scripts/pg.sh up DIR        start it again on the same port
# The URL names a superuser `samlgate` (trust auth, loopback only), so tests may create
# databases of their own. Never use this for real data.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_installed() {
  if ! pg_bin >/dev/null; then
    SAMLGATE_SKIP_BROWSER=1 SAMLGATE_SKIP_SSP=1 SAMLGATE_SKIP_VENV=1 \
      SAMLGATE_EXTRA_PKGS=postgresql-15 "$here/scripts/install-deps.sh" >&2
  fi
  pg_bin >/dev/null || { echo "pg.sh: no initdb after install" >&2; exit 1; }
}

# Runs a command as the cluster's owner: ourselves, or `nobody` when we are root (PostgreSQL
# refuses to run as root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "pg.sh: no free port" >&2
  return 1
}

server_start() {
  local dir=$1
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
    start >/dev/null 2>&1
}

start() {
  ensure_installed
  local bin dir port
  bin=$(pg_bin)
  dir=${1:-$(mktemp -d /tmp/samlgate-pg.XXXXXX)}
  mkdir -p "$dir"
  chmod 0755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown nobody "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U samlgate -A trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    echo "$port" >"$dir/port"
    if server_start "$dir"; then
      break
    fi
    port=""
  done
  [ -n "$port" ] || { cat "$dir/postgres.log" >&2; exit 1; }
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U samlgate samlgate
  echo "postgresql://samlgate@127.0.0.1:$port/samlgate" >"$dir/url"
  echo "pg.sh: cluster in $dir (stop: scripts/pg.sh stop $dir)" >&2
  cat "$dir/url"
}

stop() {
  local dir=${1:?usage: pg.sh stop DIR}
  [ -d "$dir/data" ] || { echo "pg.sh: no cluster in $dir" >&2; return 0; }
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  url) cat "${2:?usage: pg.sh url DIR}/url" ;;
  down) as_owner "$(pg_bin)/pg_ctl" -D "${2:?usage: pg.sh down DIR}/data" -m fast -w stop >/dev/null ;;
  up) server_start "${2:?usage: pg.sh up DIR}" || { cat "$2/postgres.log" >&2; exit 1; } ;;
  install) ensure_installed ;;
  *) echo "usage: pg.sh start [DIR] | stop DIR | url DIR | down DIR | up DIR | install" >&2; exit 2 ;;
esac
