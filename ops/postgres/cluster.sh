#!/usr/bin/env bash
# A PostgreSQL primary, optionally with a synchronous standby, on this
# machine, for trying the switch on PostgreSQL (issue #14). Loopback only.
#
#   ops/postgres/cluster.sh start DIR [PORT [STANDBY_PORT]]
#   ops/postgres/cluster.sh stop DIR
#   ops/postgres/cluster.sh promote DIR     # the standby becomes the primary
#
# With STANDBY_PORT, the primary commits only once the standby has the WAL
# (synchronous_commit = on, synchronous_standby_names = 'standby'); give
# the switch both hosts and it follows a promotion by itself:
#   --store 'host=127.0.0.1,127.0.0.1 port=PORT,STANDBY_PORT user=postgres dbname=switch target_session_attrs=read-write'
# Needs Debian's postgresql-15 (installed, not running). As root, the
# servers run as the postgres user (PostgreSQL refuses root).
set -euo pipefail
cmd=${1:?start, stop or promote}
dir=${2:?a directory for the cluster}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
start)
  port=${3:-5432}
  standby_port=${4:-}
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  as_pg "$bin/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 >/dev/null
  cat >>"$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
wal_level = replica
max_wal_senders = 4
synchronous_commit = on
CONF
  echo "host replication postgres 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  as_pg "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc 'CREATE DATABASE switch'
  echo "primary on 127.0.0.1:$port"
  if [ -n "$standby_port" ]; then
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/standby" -R -c fast \
      -d "host=127.0.0.1 port=$port user=postgres application_name=standby"
    cat >>"$dir/standby/postgresql.conf" <<CONF
port = $standby_port
CONF
    as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
    # Synchronous only now that the standby is there (before, every commit
    # would wait for it).
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc \
      "ALTER SYSTEM SET synchronous_standby_names = 'standby'" -c 'SELECT pg_reload_conf()' >/dev/null
    echo "synchronous standby on 127.0.0.1:$standby_port"
  fi
  ;;
stop)
  for node in standby primary; do
    [ -d "$dir/$node" ] && as_pg "$bin/pg_ctl" -D "$dir/$node" -m fast -w stop >/dev/null 2>&1 || true
  done
  ;;
promote)
  as_pg "$bin/pg_ctl" -D "$dir/standby" -w promote
  ;;
*)
  echo "usage: $0 start|stop|promote DIR [PORT [STANDBY_PORT]]" >&2
  exit 2
  ;;
esac
