"""A training job for the reliability suite's subprocess tests.

Instruments in code (so the fake 255 W devices of ``tests/conftest.py`` can be injected with
``--fake-devices``) or relies on ``opentelemetry-instrument`` (``--auto``). Finished spans go to
``--spans-file`` (JSON lines) through a ``BatchSpanProcessor`` that never exports on its own
schedule: spans reach the file only when the provider is flushed or shut down. Prints ``READY``
(flushed) once training has made ``--ready-step`` steps, and ``TRAINED`` when ``train()``
returns. ``--step-sleep`` slows the steps down so a signal can arrive mid-run. ``--leave`` makes
the program leave training at step 2 the way a user's program might: ``keyboard`` (an uncaught
``KeyboardInterrupt``, as Ctrl-C), ``exit3`` (``sys.exit(3)``), or ``fork-exit`` (a child forked
mid-training leaves through ``sys.exit(0)``, unwinding the inherited ``train()``; the parent
waits for it and trains on).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))


def _span_record(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "status": span.status.status_code.name,
        "attributes": {
            k: v if not isinstance(v, tuple) else list(v) for k, v in span.attributes.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--spans-file")
    parser.add_argument("--auto", action="store_true", help="opentelemetry-instrument does it")
    parser.add_argument("--fake-devices", action="store_true")
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--ready-step", type=int, default=0)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--leave", choices=["keyboard", "exit3", "fork-exit"])
    ns = parser.parse_args(argv)

    from transformers import TrainerCallback

    class Pace(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if ns.ready_step and state.global_step == ns.ready_step:
                print("READY", flush=True)
            if ns.step_sleep:
                time.sleep(ns.step_sleep)
            if state.global_step == 2 and ns.leave == "keyboard":
                raise KeyboardInterrupt
            if state.global_step == 2 and ns.leave == "exit3":
                sys.exit(3)
            if state.global_step == 2 and ns.leave == "fork-exit":
                import os

                pid = os.fork()
                if pid == 0:
                    sys.exit(0)  # unwinds the inherited train() in the child
                os.waitpid(pid, 0)

    if not ns.auto:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
        from hf_eco2ai import energy_monitor as monitor_module

        class FileSpanExporter(SpanExporter):  # type: ignore[misc]
            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                if ns.spans_file:
                    with open(ns.spans_file, "a", encoding="utf-8") as fh:
                        for span in spans:
                            fh.write(json.dumps(_span_record(span)) + "\n")
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(FileSpanExporter(), schedule_delay_millis=600_000)
        )
        if ns.fake_devices:
            from tests.conftest import fake_monitor

            monitor_module.set_monitor_factory(fake_monitor)
        config = CarbonConfig.from_env(sample_interval=0.05, output_dir=ns.output_dir)
        HFEco2AIInstrumentor().instrument(tracer_provider=provider, config=config)

    from train_hf import make_trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            tmp,
            train_size=ns.train_size,
            eval_size=16,
            epochs=ns.epochs,
            callbacks=[Pace()],
            logging_steps=1000,
        )
        trainer.train()
    print("TRAINED", flush=True)


if __name__ == "__main__":
    main()
