#!/usr/bin/env bash
# Full disk, ridden out, repeated: runs the end-to-end test `disk_full` (Sift on a small tmpfs,
# filled under load until requests are refused, space given back, then SIGTERM or SIGKILL, and a
# SIGTERM while still full; a restart; every acknowledged span and log record must be readable)
# RUNS times and prints how many stops kept everything. Needs root (it mounts a tmpfs).
#
#   benches/scripts/disk_full.sh            # RUNS=10 PROFILE=release by default
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-10}
PROFILE=${PROFILE:-release}
flag=()
[ "$PROFILE" = release ] && flag=(--release)

cargo test "${flag[@]}" --locked -p sift-collector --test e2e --no-run
passed=0
failed=0
for run in $(seq 1 "$RUNS"); do
  log=$(mktemp)
  # One run: fill, free, SIGTERM, restart, check; the same with SIGKILL; then SIGTERM while full.
  if cargo test "${flag[@]}" --locked -q -p sift-collector --test e2e disk_full:: -- --nocapture >"$log" 2>&1; then
    passed=$((passed + 3))
    grep -E '^(Term|Kill)[A-Za-z]*:' "$log" | sed "s/^/run $run /"
    rm -f "$log"
  else
    failed=$((failed + 1))
    echo "run $run: FAILED (log kept in $log)"
    grep -E '^(Term|Kill)[A-Za-z]*:|panicked|acknowledged' "$log" | cut -c1-300 | head -5
  fi
done
echo "disk_full: $passed stops kept every acknowledged item, $failed runs lost some or failed ($RUNS runs of SIGTERM, SIGKILL and SIGTERM-while-full, $PROFILE build)"
[ "$failed" -eq 0 ]
