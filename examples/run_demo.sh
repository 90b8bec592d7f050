#!/usr/bin/env bash
# The main job: train a tiny BERT offline under `opentelemetry-instrument`, with no server.
# Spans go to the console exporter (captured in demo-output/console.txt) and are shown as a
# table at the end; the run summary is logged by hf-eco2ai.
# To send the same run to a Collector instead:
#   OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 opentelemetry-instrument python examples/train_hf.py
set -euo pipefail
VENV=${1:-.venv}
OUT=demo-output
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OTEL_SERVICE_NAME=${OTEL_SERVICE_NAME:-hf-eco2ai-demo}
export OTEL_TRACES_EXPORTER=${OTEL_TRACES_EXPORTER:-console}
export OTEL_METRICS_EXPORTER=${OTEL_METRICS_EXPORTER:-none}
export OTEL_LOGS_EXPORTER=${OTEL_LOGS_EXPORTER:-none}
export OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR=${OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR:-$OUT/runs}
export OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL=${OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL:-0.2}
echo "== hf-eco2ai demo: tiny BERT, synthetic data, CPU, no network =="
echo "(training; the Trainer's logs and the exported spans go to $OUT/console.txt)"
"$VENV/bin/opentelemetry-instrument" "$VENV/bin/python" examples/train_hf.py \
  --epochs "${DEMO_EPOCHS:-2}" --train-size "${DEMO_TRAIN_SIZE:-4096}" > "$OUT/console.txt"
echo
echo "== spans with the energy and CO2 of their own window =="
"$VENV/bin/python" examples/show_spans.py "$OUT/console.txt"
latest=$(ls -td "$OUT"/runs/*/ | head -1)
echo
echo "run report: ${latest}report.json (and power.png); again with: hf-eco2ai report ${latest%/}"
