#!/usr/bin/env bash
# Every benchmark at full size, as published in docs/benchmarks.md: tables and JSON under
# benchmarks/results/ (gitignored), with the load average before and after each one.
# Takes about 50 minutes on 2 cores (the overhead pairs 35, the idle cost 5). Run it on a quiet machine (check `uptime` first).
#
# Usage: bash benchmarks/run_full.sh [benchmark ...]   (default: all; names: core sampler
#        idle scale memory hot-path overhead profile)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PY:-.venv/bin/python}"
OUT="benchmarks/results"
mkdir -p "$OUT"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(core sampler idle scale memory hot-path overhead profile)

run() {  # name, command...
  local name="$1"
  shift
  {
    echo "# $name: $*"
    echo "# commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benchmarks || echo ' + uncommitted changes')"
    echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$OUT/$name.txt"
  "$@" >>"$OUT/$name.txt"
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$name.txt"
  cat "$OUT/$name.txt"
}

for name in "${names[@]}"; do
  case "$name" in
    core) run core "$PY" benchmarks/core.py ;;
    sampler) run sampler "$PY" benchmarks/sampler.py --json "$OUT/sampler.json" ;;
    idle)
      bash benchmarks/setup_peers.sh
      run idle-cost "$PY" benchmarks/idle_cost.py --json "$OUT/idle-cost.json"
      ;;
    scale) run scale "$PY" benchmarks/scale.py --json "$OUT/scale.json" ;;
    memory) run memory "$PY" benchmarks/memory.py --json "$OUT/memory.json" ;;
    hot-path)
      run hot-path "$PY" -m pytest tests/performance/test_hot_path.py -q --benchmark-only \
        --benchmark-sort=name --benchmark-columns=min,median,iqr,mean,rounds \
        --benchmark-json="$OUT/hot-path.json"
      ;;
    overhead)
      bash benchmarks/setup_peers.sh
      # the budget is on the Trainer run: more pairs there, to narrow the interval
      run overhead-trainer "$PY" benchmarks/overhead.py --frameworks trainer --rounds 20 \
        --json "$OUT/overhead-trainer.json"
      run overhead-lightning "$PY" benchmarks/overhead.py --frameworks lightning --rounds 8 \
        --json "$OUT/overhead-lightning.json"
      ;;
    profile) run profile-run "$PY" benchmarks/profile_run.py ;;
    *)
      echo "unknown benchmark: $name" >&2
      exit 2
      ;;
  esac
done
