#!/usr/bin/env bash
# Build the peers' environment for `benchmarks/overhead.py --peers`: eco2ai and CodeCarbon next to
# hf-eco2ai, in one venv, so every variant runs on the same interpreter, torch and transformers.
#
# Why a separate venv: eco2ai needs pandas < 3 and setuptools < 81 (it imports pkg_resources),
# which the project's own environment does not pin. torch is the local CPU build
# (constraints/test.txt); an unpinned torch would pull a multi-GB CUDA build.
#
# Usage: bash benchmarks/setup_peers.sh [VENV_DIR] [MAIN_VENV]
#   VENV_DIR   default benchmarks/.venv-peers (gitignored)
#   MAIN_VENV  default .venv: transformers/accelerate/lightning/OpenTelemetry are pinned to the
#              versions installed there, so plain and instrumented runs match `make bench`;
#              matplotlib too (the `plot` extra), so our run report draws power.png as it does
#              in the dev environment.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/benchmarks/.venv-peers}"
MAIN_VENV="${2:-$ROOT/.venv}"
CONSTRAINTS="$ROOT/constraints/test.txt"
BASE_PY="${PYTHON:-python3}"
if [ -x "$MAIN_VENV/bin/python" ]; then
  # the same interpreter build as the main venv
  BASE_PY="$("$MAIN_VENV/bin/python" -c 'import sys; print(sys._base_executable)')"
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$BASE_PY" -m venv "$VENV"
fi
pip_install() {  # quiet, without this machine's notes about absent local index folders
  "$VENV/bin/python" -m pip --quiet install "$@" 2> >(grep -v 'is ignored: it is neither' >&2)
}
if [ -f "$VENV/.installed" ] && [ "$VENV/.installed" -nt "$0" ]; then
  echo "peers venv up to date: $VENV"
  exit 0
fi

pin() {  # "name==version" as installed in the main venv, else the bare name
  local name="$1"
  local version=""
  if [ -x "$MAIN_VENV/bin/python" ]; then
    version="$("$MAIN_VENV/bin/python" - "$name" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    print("")
EOF
)"
  fi
  if [ -n "$version" ]; then echo "$name==$version"; else echo "$name"; fi
}

# the project's constraints, less the pins eco2ai cannot take (pandas 3: it needs pandas < 3)
PEER_CONSTRAINTS="$VENV/constraints.txt"
grep -v -E '^(pandas|setuptools)==' "$CONSTRAINTS" > "$PEER_CONSTRAINTS"
pip_install -c "$PEER_CONSTRAINTS" torch==2.13.0
pip_install -c "$PEER_CONSTRAINTS" \
  "pandas<3" "setuptools<81" \
  "$(pin transformers)" "$(pin accelerate)" "$(pin lightning)" \
  "$(pin opentelemetry-api)" "$(pin opentelemetry-sdk)" \
  "$(pin opentelemetry-instrumentation)" "$(pin opentelemetry-semantic-conventions)" \
  "$(pin wrapt)" "$(pin psutil)" "$(pin nvidia-ml-py)" "$(pin numpy)" "$(pin matplotlib)" \
  eco2ai codecarbon
pip_install --no-deps -e "$ROOT"
touch "$VENV/.installed"
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version
for name in ("torch", "transformers", "lightning", "eco2ai", "codecarbon", "pandas", "hf-eco2ai"):
    print(f"{name} {version(name)}")
EOF
