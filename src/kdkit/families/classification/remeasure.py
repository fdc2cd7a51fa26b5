"""`kdkit evaluate RUN_DIR --cost-only`: time the saved models again, without re-evaluating accuracy.

Cost depends on the machine and its load at the moment of measuring, quality does not; so cost can be re-measured
on demand (on a quiet machine, with another thread count) while everything training wrote stays as it was. The
numbers go to ``cost.json`` (and ``cost.md``) beside ``results.json``: the rows' parameters, size, latency and
throughput with their quartiles, the speed-ups over the teacher, and the conditions (threads, load, rounds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.families.classification.pipeline import int8_roles, load_run_models, measure_cost
from kdkit.io.checkpoint import write_atomic
from kdkit.measure.spread import conditions_text
from kdkit.models.quantization import convert_quantized
from kdkit.report.table import print_table, to_markdown
from kdkit.run.rundir import COST_OUTPUTS, LABELS, RESULTS, RESULTS_FORMAT


def remeasure_cost(run_dir: str | Path, console: Console | None = None, quick: bool = False,
                   threads: int | None = None) -> list[dict[str, Any]]:
    """Re-time the teacher and both students of `run_dir` together and write cost.json and cost.md; returns the
    rows (cost only: no accuracy, no predictions)."""
    run_dir = Path(run_dir)
    cfg, bundle, models = load_run_models(run_dir)
    int8 = int8_roles(cfg)
    # as in evaluate_models: a quantization-aware student is timed as what it deploys to, its int8 conversion
    models = {role: convert_quantized(m) if role in int8 else m for role, m in models.items()}
    if console is not None:
        console.print("timing latency and throughput of the three models in interleaved rounds (accuracy is not "
                      "re-evaluated)", highlight=False)
    costs, conditions = measure_cost(bundle, models, quick=quick, threads=threads)
    rows = [{"model": LABELS[role] + (" (int8)" if role in int8 else ""), "role": role, **costs[role]}
            for role in models]
    summary = {"format": RESULTS_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows,
               "cost": conditions}
    note = conditions_text(conditions)
    write_atomic(run_dir / COST_OUTPUTS["table"], to_markdown(rows) + "\n" + note + "\n")
    write_atomic(run_dir / COST_OUTPUTS["results"], json.dumps(summary, indent=2))
    print_table(rows, title=f"kdkit: {cfg.data.name} (cost re-measured; {RESULTS} unchanged)", console=console,
                caption=note)
    (console or Console()).print(f"cost: {run_dir / COST_OUTPUTS['results']}", highlight=False, soft_wrap=True)
    return rows
