"""`kdkit train CONFIG --quick-timing` times the cost with the quick plan (kdkit.measure.cost.Plan.quick) and says
so in results.json (cost.plan, rounds, repeats) and under the table; without the flag, the full plan. `kdkit
evaluate --quick-timing` is the same flag as its `--quick`."""

import json

import pytest
from hostile import cli, write_config

from kdkit.measure.cost import Plan


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{plan name: (run directory, what `kdkit train` printed)}: the tiny config trained with and without the flag."""
    found = {}
    for plan, flags in (("full", []), ("quick", ["--quick-timing"])):
        folder = tmp_path_factory.mktemp(plan)
        done = cli(["train", write_config(folder / "c.yaml"), *flags])
        assert done.code == 0, done.err + done.crash
        found[plan] = folder / "run", " ".join(done.out.split())
    return found


@pytest.mark.parametrize("name, plan", [("full", Plan()), ("quick", Plan.quick())])
def test_train_records_the_plan_that_timed_the_cost(runs, name, plan):
    run, printed = runs[name]
    cost = json.loads((run / "results.json").read_text())["cost"]
    assert cost["plan"] == name and cost["rounds"] == plan.rounds and cost["min_round_s"] == plan.min_round_s
    assert cost["repeats"] == {"latency": plan.latency_repeats, "throughput": plan.throughput_repeats}
    assert cost["budget_s"] == plan.budget_s and cost["warmup"] == plan.warmup
    table = (run / "table.md").read_text()
    assert ("quick plan" in table) == (name == "quick") and ("quick plan" in printed) == (name == "quick")


def test_evaluate_takes_the_same_flag(runs):
    run = runs["full"][0]
    done = cli(["evaluate", run, "--quick-timing"])
    assert done.code == 0, done.err + done.crash
    assert json.loads((run / "evaluation.json").read_text())["cost"]["plan"] == "quick"
    assert json.loads((run / "results.json").read_text())["cost"]["plan"] == "full"  # the training's stays
