#!/usr/bin/env bash
# Soak: the default pipeline (embedded defaults: redaction → WAL → tail sampling → storage +
# full-text) under all three signals at a steady rate for a long time, with a light query load.
# Prints one line per minute: stored rows/s per signal, WAL bytes, RSS (all, and anonymous: the
# heap, without mapped index and part files the kernel can drop), CPU cores used, index merges running, the
# most parts in one partition and segments in one index being written, disk bytes per stored row,
# items refused. Ends with the same figures over the first and the last ten minutes.
#
#   benches/scripts/soak.sh                     # MINUTES=60 RATE=100000
#   MINUTES=20 benches/scripts/soak.sh          # shorter
#   QUERIES=0 benches/scripts/soak.sh           # without the query load (write side alone)
#   TIMES=straddle benches/scripts/soak.sh      # fixed item times across an hour's turn (see below)
#   KEEP=/tmp/soak-data benches/scripts/soak.sh  # keep the store afterwards (to query it unloaded)
#
# Ports: the embedded defaults (4317, 4318, 3200) must be free. Bounded: the load generator stops
# after MINUTES (at most 120), and so does everything else.
set -euo pipefail
cd "$(dirname "$0")/../.."

MINUTES=${MINUTES:-60}
RATE=${RATE:-100000}
QUERIES=${QUERIES:-1}
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -z "${KEEP:-}" ] || mv "$work/data" "$KEEP"; rm -rf "$work"' EXIT

cargo build --release --locked -p sift-collector -p sift-benches --bins >&2

"$target/sift" serve --data-dir "$work/data" >"$work/sift.log" 2>&1 &
sift=$!
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:3200/readyz >/dev/null && break
  sleep 0.2
done

# Item times. TIMES=live (default): span and log times follow the clock, as an application's do
# (each request's newest time is when it is sent), so the newest records are in the newest index
# segments and an hour turns once an hour. The load generator's payloads are made once, so without
# it their times do not move: TIMES=straddle sends times from hh-1:50 to hh:08 of the hour the run
# starts in, so two hour partitions of every table take writes for the whole run (the harder case
# for merges: one partition alone hid a merge starvation); TIMES=hour the 20 minutes before the
# start (one partition unless the run starts in the first 20 minutes of an hour).
case "${TIMES:-live}" in
  live) time_args=(--live-times) ;;
  straddle) time_args=(--start-unix-nano $(( ($(date +%s) / 3600 * 3600 - 600) * 1000000000 ))) ;;
  hour) time_args=() ;;
  *) echo "TIMES must be live, straddle or hour" >&2; exit 2 ;;
esac
"$target/sift-loadgen" --signals traces,logs,metrics --rate "$RATE" --duration $((MINUTES * 60)) \
  --max-requests 100000000 "${time_args[@]}" --json >"$work/loadgen.json" 2>/dev/null &
load=$!

# A light query load: a trace search, a log search and a metric query every 10 s, each timed
# (`$work/queries.log`: epoch second, query, seconds, HTTP status; answers other than 200 are
# counted per minute).
query() { # query NAME URL
  local took
  took=$(curl -s -o /dev/null -w '%{time_total} %{http_code}' "$2" || echo "0 000")
  echo "$(date +%s) $1 $took" >>"$work/queries.log"
}
touch "$work/queries.log"
if [ "$QUERIES" != 0 ]; then
  (
    end=$((SECONDS + MINUTES * 60))
    while [ $SECONDS -lt $end ]; do
      query trace "http://127.0.0.1:3200/api/v1/traces?status=error&limit=20"
      query log "http://127.0.0.1:3200/api/v1/logs?q=error&limit=20"
      query metric "http://127.0.0.1:3200/api/v1/metrics?name=http.server.duration&agg=p99"
      sleep 10
    done
  ) &
fi

metric() { # metric TEXT NAME [LABEL] -> value (0 if absent)
  awk -v name="$2" -v label="${3:-}" '
    $1 == name || index($1, name "{") == 1 { if (label == "" || index($1, label) > 0) { v += $2 } }
    END { printf "%.0f\n", v }' <<<"$1"
}

printf '%-4s %9s %9s %8s %8s %8s %7s %5s %6s %7s %7s %7s %7s %8s %8s %9s %s\n' \
  min spans/s logs/s points/s wal_MB rss_MB anon_MB cores merges parts_s parts_l segs_s segs_l B/span B/log refused \
  'query max ms (trace log metric)'
minute_start=$(date +%s)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$sift/stat"; }
prev_ticks=$(cpu_ticks)
hz=$(getconf CLK_TCK)
declare -a rates_spans rates_logs rates_points
prev_spans=0 prev_logs=0 prev_points=0
for minute in $(seq 1 "$MINUTES"); do
  sleep 60
  kill -0 "$sift" 2>/dev/null || { echo "sift exited; log:"; tail -20 "$work/sift.log"; exit 1; }
  m=$(curl -s http://127.0.0.1:3200/metrics || true)
  spans=$(metric "$m" sift_storage_rows_total 'signal="traces"')
  logs=$(metric "$m" sift_storage_rows_total 'signal="logs"')
  points=$(metric "$m" sift_storage_rows_total 'signal="metrics"')
  wal=$(metric "$m" sift_storage_wal_bytes)
  ticks=$(cpu_ticks)
  cores=$(awk -v t=$((ticks - prev_ticks)) -v hz="$hz" 'BEGIN { printf "%.2f", t / hz / 60 }')
  prev_ticks=$ticks
  rss=$(awk '/VmRSS/ { printf "%d\n", $2 * 1024 }' "/proc/$sift/status")
  anon=$(awk '/RssAnon/ { printf "%d\n", $2 * 1024 }' "/proc/$sift/status")
  merges=$(metric "$m" sift_storage_index_merges_running)
  parts_s=$(metric "$m" sift_storage_partition_parts_max 'signal="traces"')
  parts_l=$(metric "$m" sift_storage_partition_parts_max 'signal="logs"')
  segs_s=$(metric "$m" sift_storage_index_segments_max 'signal="traces"')
  segs_l=$(metric "$m" sift_storage_index_segments_max 'signal="logs"')
  disk_s=$(metric "$m" sift_storage_disk_bytes 'signal="traces"')
  disk_l=$(metric "$m" sift_storage_disk_bytes 'signal="logs"')
  refused=$(metric "$m" sift_receiver_refused_total)
  rs=$(((spans - prev_spans) / 60)) rl=$(((logs - prev_logs) / 60)) rp=$(((points - prev_points) / 60))
  rates_spans+=("$rs") rates_logs+=("$rl") rates_points+=("$rp")
  prev_spans=$spans prev_logs=$logs prev_points=$points
  queries=$(awk -v from="$minute_start" '
    $1 >= from { if ($3 * 1000 > max[$2]) max[$2] = $3 * 1000; if ($4 != 200) failed++ }
    END { printf "%d %d %d (%d not 200)", max["trace"], max["log"], max["metric"], failed }' "$work/queries.log")
  minute_start=$(date +%s)
  printf '%-4s %9s %9s %8s %8s %8s %7s %5s %6s %7s %7s %7s %7s %8s %8s %9s %s\n' \
    "$minute" "$rs" "$rl" "$rp" $((wal >> 20)) $((rss >> 20)) $((anon >> 20)) "$cores" "$merges" "$parts_s" "$parts_l" "$segs_s" "$segs_l" \
    $((spans > 0 ? disk_s / spans : 0)) $((logs > 0 ? disk_l / logs : 0)) "$refused" "$queries"
done
wait "$load" || true

avg() { # avg FROM COUNT VALUES... -> mean of VALUES[FROM..FROM+COUNT)
  local from=$1 count=$2
  shift 2
  local values=("$@") sum=0
  for ((i = from; i < from + count; i++)); do sum=$((sum + values[i])); done
  echo $((sum / count))
}
window=$((MINUTES < 20 ? MINUTES / 2 : 10))
if [ "$window" -gt 0 ]; then
  last=$((MINUTES - window))
  echo
  echo "stored rows/s, first $window min → last $window min:"
  echo "  spans  $(avg 0 "$window" "${rates_spans[@]}") → $(avg "$last" "$window" "${rates_spans[@]}")"
  echo "  logs   $(avg 0 "$window" "${rates_logs[@]}") → $(avg "$last" "$window" "${rates_logs[@]}")"
  echo "  points $(avg 0 "$window" "${rates_points[@]}") → $(avg "$last" "$window" "${rates_points[@]}")"
fi
echo "load generator: $(cat "$work/loadgen.json")"
