#!/usr/bin/env bash
# Side-by-side benchmark: Sift against Rotel (a Rust OpenTelemetry collector, PyPI `rotel`) on the
# same machine, the same load and the same core budget. The server is pinned to core 0, the load
# generator to core 1. Writes benches/results/latest.md.
#
#   benches/compare.sh     # DURATION=10 CONNECTIONS=8 SPANS=512 RATE=150000 SUSTAIN=60 by default
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
SPANS=${SPANS:-512}
RATE=${RATE:-150000}
SUSTAIN=${SUSTAIN:-60}
DEFAULT="Sift default config (redaction → WAL → tail sampling → storage + full-text)"
ROTEL_VERSION=0.0.1a15
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --locked -p sift-collector -p sift-benches --bins

venv=benches/.venv-rotel
rotel=$(find "$venv" -name rotel-agent -type f 2>/dev/null | head -n 1 || true)
if [ -z "$rotel" ]; then
  echo "installing rotel $ROTEL_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --pre "rotel==$ROTEL_VERSION"
  rotel=$(find "$venv" -name rotel-agent -type f | head -n 1)
fi

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

rows=()
# measure NAME PROTOCOL RATE SERVER_CORES LOAD_CORES DURATION -- server command...
# RATE 0 = flat out. Prints and records one table row.
measure() {
  local name=$1 protocol=$2 rate=$3 server_cores=$4 load_cores=$5 duration=$6
  shift 7
  local port=4318
  [ "$protocol" = grpc ] && port=4317
  taskset -c "$server_cores" "$@" >"$work/server.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  local before
  before=$(cpu_ticks "$pid")
  local report
  report=$(taskset -c "$load_cores" "$target/sift-loadgen" --protocol "$protocol" --endpoint "127.0.0.1:$port" \
    --connections "$CONNECTIONS" --duration "$duration" --spans-per-request "$SPANS" --rate "$rate" --json 2>/dev/null)
  local after hwm
  after=$(cpu_ticks "$pid")
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  local row
  row=$(python3 - "$name" "$protocol" "$report" "$((after - before))" "$(getconf CLK_TCK)" "$hwm" "$rate" "$server_cores" <<'PY'
import json, sys
name, protocol, report, ticks, hz, hwm, rate, cores = sys.argv[1:9]
r = json.loads(report)
cpu = int(ticks) / int(hz)
spans = r["spans_acked"]
per_cpu = spans / cpu if cpu else 0
lat = r["ack_latency_ms"]
load = "flat out" if rate == "0" else f"{int(rate):,} spans/s"
where = "core 0" if cores == "0" else "both cores"
print(f"| {name} | {protocol} | {load}, {where}, {r['seconds']:.0f} s | {r['spans_per_sec']:,.0f} | {cpu:.1f} | {per_cpu:,.0f} | {lat['p50']:.1f} / {lat['p99']:.1f} | {r['requests_refused']} | {int(hwm) / 1024:.0f} MiB |")
PY
)
  echo "$row"
  rows+=("$row")
}

cat >"$work/sift-nop.yaml" <<'YAML'
receivers: { otlp: { protocols: { grpc: { endpoint: 127.0.0.1:4317 }, http: { endpoint: 127.0.0.1:4318 } } } }
exporters: { nop: {} }
service: { pipelines: { traces: { receivers: [otlp], exporters: [nop] } } }
storage: { wal: { max_size_mib: 16384 } }
query: { endpoint: 127.0.0.1:3200 }
YAML

for protocol in http grpc; do
  measure "Rotel $ROTEL_VERSION → blackhole" "$protocol" 0 0 1 "$DURATION" -- "$rotel" start --exporter blackhole \
    --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318
  rm -rf "$work/data"
  measure "Sift → WAL (fsync) → nop" "$protocol" 0 0 1 "$DURATION" -- "$target/sift" serve --config "$work/sift-nop.yaml" --data-dir "$work/data"
  rm -rf "$work/data"
  measure "$DEFAULT" "$protocol" 0 0 1 "$DURATION" -- "$target/sift" serve --data-dir "$work/data"
done
# The default pipeline held at a rate for a minute, Sift and the load generator sharing both cores.
for rate in "$RATE" $((RATE / 2)); do
  rm -rf "$work/data"
  measure "$DEFAULT" http "$rate" 0,1 0,1 "$SUSTAIN" -- "$target/sift" serve --data-dir "$work/data"
done

{
  echo "# Sift vs Rotel — $(date -u +%Y-%m-%d)"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)."
  echo "Flat-out runs: server pinned to core 0, \`sift-loadgen\` to core 1, ${DURATION} s. Held-rate runs: both"
  echo "share both cores for ${SUSTAIN} s. $CONNECTIONS connections, pre-encoded requests of $SPANS spans"
  echo "(sift-loadgen's seeded workload: traces of 1-30 spans, 5-15 attributes per span, 5% of traces with"
  echo "an error span, 5% slower than 1 s; trace ids renewed on every round through the payloads; about"
  echo "160 KB per request). Spans per CPU-second = acknowledged spans / (user + system CPU time of the"
  echo "server during the run, from /proc/PID/stat). Peak RSS = VmHWM of the server."
  echo
  echo "| server | protocol | load | spans/s | server CPU s | spans per CPU-second | ack p50 / p99 ms | refused requests | peak RSS |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Command: \`benches/compare.sh\` (DURATION=$DURATION CONNECTIONS=$CONNECTIONS SPANS=$SPANS RATE=$RATE SUSTAIN=$SUSTAIN)."
  echo "Rotel acknowledges before anything is durable; Sift acknowledges after the batch is fsynced in its WAL."
  echo "With no processor in the pipeline Sift only scans each request (validating it as prost would) and"
  echo "writes the received bytes to the WAL; the default pipeline decodes, redacts and re-encodes."
} >benches/results/latest.md
cat benches/results/latest.md
