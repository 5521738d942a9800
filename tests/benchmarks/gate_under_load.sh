#!/usr/bin/env bash
# The speed gate run repeatedly: RUNS times under the machine's own load, then RUNS times with
# two busy loops added (not niced). Prints one line per run and operation: its ratio over the
# committed ratio (the gate fails above 1.5), and each run's verdict.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-6}"
run() {
  for _ in $(seq "$runs"); do
    python -m tests.benchmarks.speed_gate |
      awk -v tag="$1" '/committed/ {gsub(/[()x]/, "", $5); print tag, $1, $5} /speed gate/ {print tag, $0}'
  done
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
run plain
python -c "while True: pass" &
busy1=$!
python -c "while True: pass" &
busy2=$!
trap 'kill "$busy1" "$busy2"' EXIT
sleep 2
echo "load average with two busy loops: $(cut -d' ' -f1-3 /proc/loadavg)"
run busy
