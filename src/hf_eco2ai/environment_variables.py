"""Environment variables read by hf-eco2ai (the ``opentelemetry_environment_variables`` entry point).

``opentelemetry-instrument`` turns each into a command-line flag: ``OTEL_PYTHON_HF_ECO2AI_PUE``
becomes ``--hf_eco2ai_pue``. Every variable maps to the :class:`~hf_eco2ai.config.CarbonConfig`
field of the same name in lower case.

Generated from the ``CarbonConfig`` field table by ``python tools/docgen.py``: do not edit.
"""

OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL = "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL"
"""Seconds between two sensor readings. Allowed: a number between 0.05 and 60; default: 1.0."""

OTEL_PYTHON_HF_ECO2AI_PUE = "OTEL_PYTHON_HF_ECO2AI_PUE"
"""Power usage effectiveness of the data centre, applied to attributed energy. Allowed: a number
between 1 and 3; default: 1.0."""

OTEL_PYTHON_HF_ECO2AI_COUNTRY = "OTEL_PYTHON_HF_ECO2AI_COUNTRY"
"""Country of the grid (ISO 3166-1 alpha-2 or alpha-3); normalised to alpha-2. Allowed: an ISO
3166-1 alpha-2 or alpha-3 country code, e.g. 'FR' or 'FRA'; default: None."""

OTEL_PYTHON_HF_ECO2AI_REGION = "OTEL_PYTHON_HF_ECO2AI_REGION"
"""Sub-national grid zone or cloud region (e.g. 'CA', 'us-east-1'). Allowed: a non-empty string;
default: None."""

OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY = "OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY"
"""Grid carbon intensity override in gCO2e/kWh; wins over every lookup. Allowed: a number between 0
and 2000; default: None."""

OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE = "OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE"
"""Which carbon-intensity table country/region lookups use ('eco2ai' needs the eco2ai package).
Allowed: one of 'builtin', 'eco2ai'; default: 'builtin'."""

OTEL_PYTHON_HF_ECO2AI_CARBON_PROVIDER = "OTEL_PYTHON_HF_ECO2AI_CARBON_PROVIDER"
"""Live grid-intensity provider (opt-in, uses the network). Allowed: one of 'none',
'electricitymaps', 'uk-carbon-intensity'; default: 'none'."""

OTEL_PYTHON_HF_ECO2AI_CARBON_REFRESH_INTERVAL = "OTEL_PYTHON_HF_ECO2AI_CARBON_REFRESH_INTERVAL"
"""Seconds between two live grid-intensity fetches. Allowed: a number between 60 and 86400;
default: 900.0."""

OTEL_PYTHON_HF_ECO2AI_CLOUD_METADATA = "OTEL_PYTHON_HF_ECO2AI_CLOUD_METADATA"
"""Opt in to asking the cloud metadata endpoint for the region (network, short timeout). Allowed:
true or false; default: False."""

OTEL_PYTHON_HF_ECO2AI_GPU_DEVICES = "OTEL_PYTHON_HF_ECO2AI_GPU_DEVICES"
"""GPUs to measure, as CUDA/HIP indices or UUIDs; default: the GPUs this process owns. Allowed:
CUDA device indices (0, 1, …) or GPU UUIDs ('GPU-…', 'MIG-…'), e.g. '0,1'; default: None."""

OTEL_PYTHON_HF_ECO2AI_TRACK_GPU = "OTEL_PYTHON_HF_ECO2AI_TRACK_GPU"
"""Measure GPUs (NVML; amdsmi for AMD). Allowed: true or false; default: True."""

OTEL_PYTHON_HF_ECO2AI_TRACK_CPU = "OTEL_PYTHON_HF_ECO2AI_TRACK_CPU"
"""Measure the CPU (RAPL or TDP model). Allowed: true or false; default: True."""

OTEL_PYTHON_HF_ECO2AI_TRACK_RAM = "OTEL_PYTHON_HF_ECO2AI_TRACK_RAM"
"""Estimate RAM energy (RAM model). Allowed: true or false; default: True."""

OTEL_PYTHON_HF_ECO2AI_CPU_TDP = "OTEL_PYTHON_HF_ECO2AI_CPU_TDP"
"""CPU TDP override in watts for the TDP model (whole package). Allowed: a number between 1 and
2000; default: None."""

OTEL_PYTHON_HF_ECO2AI_RAM_POWER_PER_GB = "OTEL_PYTHON_HF_ECO2AI_RAM_POWER_PER_GB"
"""RAM model: watts per GB of memory in use. Allowed: a number between 0 and 10; default: 0.375."""

OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR = "OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR"
"""Directory for run reports; `~` is expanded and the path made absolute at start, and (with
`write_report`) refused at start when it cannot be created or written. Unset: `<Trainer
args.output_dir>/hf-eco2ai`, Lightning's `default_root_dir`, else `./hf-eco2ai-runs`. Allowed: a
directory path (created if missing; must be writable); default: None."""

OTEL_PYTHON_HF_ECO2AI_STEP_SPAN_EVERY = "OTEL_PYTHON_HF_ECO2AI_STEP_SPAN_EVERY"
"""Emit a step span every N optimizer steps (0 = no step spans). Allowed: an integer between 0 and
1000000; default: 0."""

OTEL_PYTHON_HF_ECO2AI_HISTORY_SIZE = "OTEL_PYTHON_HF_ECO2AI_HISTORY_SIZE"
"""Samples kept in memory (ring buffer) for reports. Allowed: an integer between 10 and 10000000;
default: 3600."""

OTEL_PYTHON_HF_ECO2AI_WRITE_REPORT = "OTEL_PYTHON_HF_ECO2AI_WRITE_REPORT"
"""Write a run report (report.json, emissions.csv, power.png) under output_dir. Allowed: true or
false; default: True."""

OTEL_PYTHON_HF_ECO2AI_CO2_BUDGET = "OTEL_PYTHON_HF_ECO2AI_CO2_BUDGET"
"""Emissions budget of a run in gCO2e. Allowed: a number > 0, up to 1e+12; default: None."""

OTEL_PYTHON_HF_ECO2AI_ENERGY_BUDGET = "OTEL_PYTHON_HF_ECO2AI_ENERGY_BUDGET"
"""Energy budget of a run in joules (PUE applied). Allowed: a number > 0, up to 1e+15; default:
None."""

OTEL_PYTHON_HF_ECO2AI_BUDGET_ACTION = "OTEL_PYTHON_HF_ECO2AI_BUDGET_ACTION"
"""What exceeding a budget does: log a warning, or stop training gracefully. Allowed: one of
'warn', 'stop'; default: 'warn'."""

OTEL_PYTHON_HF_ECO2AI_PROJECT_NAME = "OTEL_PYTHON_HF_ECO2AI_PROJECT_NAME"
"""Project name written to reports (eco2ai's project_name); bytes that are not UTF-8 become U+FFFD,
with a warning. Allowed: a non-empty string; default: 'hf-eco2ai'."""

OTEL_PYTHON_HF_ECO2AI_EXPERIMENT_DESCRIPTION = "OTEL_PYTHON_HF_ECO2AI_EXPERIMENT_DESCRIPTION"
"""Free text written to reports (eco2ai's experiment_description); bytes that are not UTF-8 become
U+FFFD, with a warning. Allowed: a string; default: ''."""

OTEL_PYTHON_HF_ECO2AI_HANDLE_SIGTERM = "OTEL_PYTHON_HF_ECO2AI_HANDLE_SIGTERM"
"""Install a SIGTERM handler (only when no other handler is installed) that ends the open run's
spans, writes its report and flushes telemetry, then dies of SIGTERM as before (instrumentor
only; off by default: a process-wide handler is visible to the program). Allowed: true or false;
default: False."""
