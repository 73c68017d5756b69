#!/usr/bin/env bash
# The switch on PostgreSQL under load, as BENCHMARKS.md measures it: a
# fresh primary with a synchronous standby (cluster.sh), NODES switch nodes
# (`switch serve --store …`, node 1 provisions, the others start after),
# the default mix from `loadtest` spread over every node, every
# acknowledged transaction then verified through the last node alone, and
# `switch check --store …`. Everything is stopped and removed at the end.
#
#   ops/postgres/bench-nodes.sh NODES [SECONDS [CONCURRENCY]]
#
# With BENCH_PERF=FILE, node 1 is sampled by `perf record` during the load
# (999 Hz, no call graphs) and its top functions by own CPU printed.
#
# Needs release builds (`cargo build --release -p switch -p loadtest`, or
# SWITCH_BIN_DIR naming another build's directory) and
# Debian's postgresql-15. Loopback only; ports 55432/55433 and 50601.. .
set -euo pipefail
nodes=${1:?how many switch nodes}
seconds=${2:-15}
concurrency=${3:-64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${SWITCH_BIN_DIR:-$root/target/release}
work=$(mktemp -d /tmp/bench-nodes.XXXXXX)
chmod 755 "$work" # the servers run as the postgres user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$here/cluster.sh" stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT

"$here/cluster.sh" start "$work/pg" 55432 55433 >/dev/null
store='host=127.0.0.1,127.0.0.1 port=55432,55433 user=postgres dbname=switch target_session_attrs=read-write'

# PostgreSQL's own double-entry baseline on the same cluster, the same
# clients and seconds, first (issue #26's ratio): an insert and two balance
# updates per transfer, committed with the synchronous standby, in a
# database of its own.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$pg_bin/psql" -h 127.0.0.1 -p 55432 -U postgres -qc 'CREATE DATABASE bench'
as_pg "$pg_bin/psql" -h 127.0.0.1 -p 55432 -U postgres -q -d bench -f "$root/ops/pgbench/init.sql" >/dev/null
cp "$root/ops/pgbench/double_entry.sql" "$work/double_entry.sql"
echo "--- pgbench, double-entry transfers ($concurrency clients, ${seconds} s, same cluster)"
as_pg "$pg_bin/pgbench" -h 127.0.0.1 -p 55432 -U postgres -n -c "$concurrency" -j 2 -T "$seconds" \
  -f "$work/double_entry.sql" bench | grep -E '^(tps|latency)'
# CPU seconds (user and system, to the tick) of the processes given, or
# of every process of the postgres user.
cpu_seconds() {
  local pids=("$@")
  [ ${#pids[@]} -eq 0 ] && mapfile -t pids < <(pgrep -u postgres)
  for p in "${pids[@]}"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.1f", s / hz}'
}
pg_cpu_before=$(cpu_seconds)
# The load generator's settings (loadtest::tune_for_load): limits out of
# the way, a large e-float, recurring bills, no schedule, no rate limit.
cat >"$work/switch.toml" <<TOML
terminal_daily_max = 1000000000000000
customer_daily_max = 1000000000000000
demo_efloat = 1000000000000
[biller_sim]
customers = 600
recurring_bills = true
[settlement]
[rate_limit]
requests_per_s = 0
TOML

targets=()
for i in $(seq 1 "$nodes"); do
  port=$((50600 + i))
  metrics=$((50700 + i))
  # Every node seals secrets with node 1's master key (written at its start).
  "$bin/switch" serve --data "$work/node$i" --config "$work/switch.toml" \
    --master-key-file "$work/node1/master.key" \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics" --console-listen off \
    --store "$store" >"$work/node$i.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q "serving" "$work/node$i.log" 2>/dev/null && break
    sleep 0.2
  done
  grep -q "serving" "$work/node$i.log" || { cat "$work/node$i.log"; exit 1; }
  targets+=(--target "http://127.0.0.1:$port")
done

perf_pid=
if [ -n "${BENCH_PERF:-}" ]; then
  perf record -q -F 999 ${BENCH_PERF_ARGS:-} -p "${pids[0]}" -o "$BENCH_PERF" -- sleep "$seconds" 2>/dev/null &
  perf_pid=$!
fi
"$bin/loadtest" "${targets[@]}" --profiles "$work/node1/profiles" \
  --concurrency "$concurrency" --duration "$seconds" --record "$work/acked.jsonl"
if [ -n "$perf_pid" ]; then
  wait "$perf_pid" || true
  echo "--- node 1's own CPU by function (perf, top 40)"
  perf report -q -i "$BENCH_PERF" --no-children --sort dso,sym 2>/dev/null | head -n 40 || true
fi
# Where the machine's time went during the run (the nodes since they
# started; every PostgreSQL process, both servers, since pgbench ended).
node_cpu=$(cpu_seconds "${pids[@]}")
pg_cpu=$(awk -v a="$(cpu_seconds)" -v b="$pg_cpu_before" 'BEGIN {printf "%.1f", a - b}')
echo "--- CPU seconds: switch nodes $node_cpu, postgres $pg_cpu (since pgbench)"
echo "--- node 1's waits for PostgreSQL (seconds: sum and count)"
curl -s http://127.0.0.1:50701/metrics |
  grep -E '^switch_(pg_[a-z_]+|request)_seconds_(sum|count)|^switch_pg_[a-z_]+_(writes|requests)_(sum|count)|^switch_pg_store_reads_total|^switch_pg_store_conflicts_total' || true
last=$((50600 + nodes))
echo "--- verification through node $nodes alone"
"$bin/loadtest" --target "http://127.0.0.1:$last" --profiles "$work/node1/profiles" \
  --verify-record "$work/acked.jsonl"
echo "--- switch check"
"$bin/switch" check --store "$store"
echo "--- the nodes' warnings and errors (last 20)"
grep -h -a -E "WARN|ERROR" "$work"/node*.log | tail -n 20 || true
