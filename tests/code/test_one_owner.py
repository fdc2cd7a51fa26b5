"""One owner per setting: KD's T and alpha have one default, in kdkit.losses.kd; a config without
distill.losses means [{name: kd}]; parsing builds the terms once and the run trains with those; KDLoss checks its
options once; tune names a term by its label."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch

import kdkit.losses.kd as kd_module
import kdkit.terms
from kdkit.errors import ConfigError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.tune import default_space
from kdkit.losses.kd import KDLoss, kd_loss
from kdkit.terms import build_terms
from kdkit.tune.space import set_path

SRC = Path(kdkit.terms.__file__).parent
RAW = {"teacher": {"name": "mlp"}, "student": {"name": "mlp"}}


def _kd_defaults() -> tuple[float, float]:
    params = inspect.signature(KDLoss.__init__).parameters
    return params["T"].default, params["alpha"].default


def test_no_losses_and_name_kd_build_the_same_loss_with_the_class_defaults() -> None:
    implicit = parse_config(dict(RAW)).distill.loss_terms()[0].loss
    explicit = parse_config({**RAW, "distill": {"losses": [{"name": "kd"}]}}).distill.loss_terms()[0].loss
    direct = build_terms([{"name": "kd"}])[0].loss
    for loss in (implicit, explicit, direct):
        assert isinstance(loss, KDLoss) and (loss.T, loss.alpha) == _kd_defaults()
    assert parse_config(dict(RAW)) == parse_config({**RAW, "distill": {"losses": [{"name": "kd"}]}})


def _restated_kd_defaults(path: Path) -> list[str]:
    """Places in a file that write KD's default T or alpha again as a literal: in a ``{"name": "kd", ...}`` dict, as
    a ``.get("T", 4.0)`` fallback, or as the default of a parameter named T, temperature or alpha. (Other values
    are a caller's own choice, e.g. self-distillation's alpha 0.5, not a second default.)"""
    values = {"T": kd_module.DEFAULT_T, "temperature": kd_module.DEFAULT_T, "alpha": kd_module.DEFAULT_ALPHA}

    def restates(key: object, value: ast.AST | None) -> bool:
        return key in values and isinstance(value, ast.Constant) and value.value == values[key]  # type: ignore[index]

    tree = ast.parse(path.read_text(encoding="utf-8"))
    # config.py recognises what older run directories hold; a name that says so, not a default
    older = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
             and [getattr(t, "id", "") for t in n.targets] == ["OLDER_RUNS_NO_LOSSES"]}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and id(node) in older:
            older |= {id(e) for e in node.elts}
        is_kd = isinstance(node, ast.Dict) and any(isinstance(v, ast.Constant) and v.value == "kd" for v in node.values)
        if is_kd and id(node) not in older:
            found += [f"{path.name}:{node.lineno} dict" for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and restates(k.value, v)]
        if (isinstance(node, ast.Call) and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                and restates(node.args[0].value, node.args[1])):
            found.append(f"{path.name}:{node.lineno} fallback")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
            defaults += node.args.kw_defaults
            found += [f"{path.name}:{node.lineno} {node.name}({arg.arg}=)"
                      for arg, default in zip(args, defaults, strict=True) if restates(arg.arg, default)]
    return found


def test_kd_defaults_are_written_once_in_the_source() -> None:
    # the loss module states each value once, as a constant its function and class take by name
    kd_src = Path(kd_module.__file__)
    assert _restated_kd_defaults(kd_src) == []
    assigned = [n.targets[0].id for n in ast.parse(kd_src.read_text(encoding="utf-8")).body
                if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)]
    assert assigned.count("DEFAULT_T") == 1 and assigned.count("DEFAULT_ALPHA") == 1
    assert _kd_defaults() == (kd_module.DEFAULT_T, kd_module.DEFAULT_ALPHA)
    # the config, tune, the pipeline and the KD-based schemes restate neither
    classification = SRC / "families" / "classification"
    plumbing = [SRC / "terms.py"]
    plumbing += [classification / f for f in ("config.py", "tune.py", "pipeline.py", "built_terms.py", "plans.py")]
    plumbing += [SRC / "schemes" / f for f in ("data_free.py", "self_distill.py", "offline.py",
                                                "assistants.py", "born_again.py", "multi_teacher.py")]
    assert all(path.is_file() for path in plumbing)
    found = [hit for path in plumbing for hit in _restated_kd_defaults(path)]
    assert found == []


def test_parsing_builds_the_terms_once_and_the_run_gets_those(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config({**RAW, "distill": {"losses": [{"name": "kd", "T": 3.0}, {"name": "ce"}]}})
    calls = []
    original = kdkit.terms.build_terms
    monkeypatch.setattr(kdkit.terms, "build_terms", lambda *a, **k: calls.append(a) or original(*a, **k))
    first = cfg.distill.loss_terms()
    assert calls == [] and [t.name for t in first] == ["kd", "ce"] and first[0].loss.T == 3.0
    second = cfg.distill.loss_terms()  # a second run of the same config object: its own terms (adapters train)
    assert len(calls) == 1 and all(a is not b for a, b in zip(first, second, strict=True))


def test_changed_or_copied_configs_build_terms_from_their_own_losses() -> None:
    cfg = parse_config({**RAW, "distill": {"losses": [{"name": "kd", "T": 3.0}]}})
    changed = cfg.distill.model_copy(update={"losses": [{"name": "kd", "T": 5.0}]})
    assert changed.loss_terms()[0].loss.T == 5.0
    kept = cfg.distill.loss_terms()
    assert kept[0].loss.T == 3.0 and all(a is not b for a, b in zip(kept, cfg.distill.loss_terms(), strict=True))


def test_kd_loss_checks_its_options_once_in_the_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="alpha"):
        KDLoss(alpha=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        KDLoss(label_smoothing=-0.1)
    loss = KDLoss(T=2.0, alpha=0.5)
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, -1])
    want = kd_loss(s, t, y, 2.0, 0.5)

    def refuse(*args: object) -> None:
        raise AssertionError("checked again at a training step")

    monkeypatch.setattr(kd_module, "check_kd_options", refuse)
    assert loss(s, t, y).item() == pytest.approx(want.item())
    with pytest.raises(AssertionError):  # the functional form keeps checking, for direct callers
        kd_loss(s, t, y, 2.0, 0.5)


def test_tune_names_a_term_by_its_label_and_by_position() -> None:
    losses = [{"name": "kd"}, {"name": "fitnet"}, {"name": "kd"}]
    by_name = {"distill": {"losses": [dict(t) for t in losses]}}
    set_path(by_name, "distill.losses.kd.T", 2.0)
    set_path(by_name, "distill.losses.kd2.alpha", 0.3)
    by_index = {"distill": {"losses": [dict(t) for t in losses]}}
    set_path(by_index, "distill.losses.0.T", 2.0)
    set_path(by_index, "distill.losses.2.alpha", 0.3)
    assert by_name == by_index and by_name["distill"]["losses"][2] == {"name": "kd", "alpha": 0.3}
    with pytest.raises(ConfigError, match="distill.losses.dkd"):
        set_path(by_name, "distill.losses.dkd.T", 2.0)


def test_the_default_search_space_names_the_first_term() -> None:
    assert set(default_space(parse_config(dict(RAW)))) == {"distill.losses.kd.T", "distill.losses.kd.alpha"}
    dkd = parse_config({**RAW, "distill": {"losses": [{"name": "dkd"}, {"name": "kd"}]}})
    assert set(default_space(dkd)) == {"distill.losses.dkd.T", "distill.losses.dkd.alpha"}


def test_mutual_runs_whose_config_holds_kd_values_still_load_and_given_losses_are_refused() -> None:
    from kdkit.families.classification.config import OLDER_RUNS_NO_LOSSES

    mutual = {**RAW, "distill": {"scheme": {"name": "mutual"}}}
    assert parse_config({**mutual, "distill": {**mutual["distill"], "losses": OLDER_RUNS_NO_LOSSES}})
    assert parse_config({**mutual, "distill": {**mutual["distill"], "losses": [{"name": "kd"}]}})
    with pytest.raises(ConfigError, match="scheme .mutual. does not read distill.losses .its options are peers, T"):
        parse_config({**mutual, "distill": {**mutual["distill"], "losses": [{"name": "kd", "T": 2.0}]}})


def test_mutual_learning_options_have_one_owner_too() -> None:
    from kdkit.schemes import mutual

    params = inspect.signature(mutual.MutualLearning.__init__).parameters
    scheme = parse_config({**RAW, "distill": {"scheme": {"name": "mutual"}}}).distill.scheme
    assert (scheme.T, scheme.alpha) == (params["T"].default, params["alpha"].default)
    assert (params["T"].default, params["alpha"].default) == (mutual.DEFAULT_T, mutual.DEFAULT_ALPHA)
    config_src = ast.parse((SRC / "families" / "classification" / "config.py").read_text(encoding="utf-8"))
    literal_defaults = [kw.lineno for call in ast.walk(config_src) if isinstance(call, ast.Call)
                        and getattr(call.func, "id", "") == "Field" for kw in [*call.args[:1]]
                        if isinstance(kw, ast.Constant) and kw.value in (mutual.DEFAULT_T, mutual.DEFAULT_ALPHA)
                        and any(k.arg == "description" and "mutual" in str(getattr(k.value, "value", ""))
                                for k in call.keywords)]
    assert literal_defaults == []
    with pytest.raises(ConfigError, match=r"distill.scheme.T: MutualLearning temperature T must be > 0 \(got 0"):
        parse_config({**RAW, "distill": {"scheme": {"name": "mutual", "T": 0.0}}})


def _assignments(name: str) -> list[str]:
    """Module-level assignments of `name` anywhere in src/kdkit."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            found += [f"{path.relative_to(SRC)}" for t in targets if getattr(t, "id", None) == name]
    return found


def test_roles_labels_and_the_results_format_have_one_owner() -> None:
    from kdkit.run import rundir

    for name in ("ROLES", "STUDENTS", "LABELS", "RESULTS_FORMAT"):
        assert _assignments(name) == ["run/rundir.py"], name
    restated = []  # the roles tuple, or a printed label as a string of its own
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "rundir.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        restated += [f"{path.relative_to(SRC)}:{n.lineno}" for n in ast.walk(tree)
                     if (isinstance(n, ast.Tuple) and [getattr(e, "value", None) for e in n.elts] == list(rundir.ROLES))
                     or (isinstance(n, ast.Constant) and n.value in ("student alone", "distilled student"))]
    assert restated == []


def test_evaluation_loaders_take_the_one_evaluation_batch_size() -> None:
    from kdkit.data.loaders import EVAL_BATCH_SIZE

    literal = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "make_loader" and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)):
                literal.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert literal == [] and EVAL_BATCH_SIZE == 512


def test_the_default_tune_ranges_of_t_and_alpha_are_written_once() -> None:
    from kdkit.schemes.registry import DEFAULT_ALPHA_RANGE, DEFAULT_T_RANGE

    def key_text(key: ast.AST | None) -> str:
        parts = key.values if isinstance(key, ast.JoinedStr) else [key]
        return str(getattr(parts[-1], "value", "")) if parts else ""

    written = []  # a range literal given as the value of a T or alpha path (a scheme's tune_space)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                pairs = zip(node.keys, node.values, strict=True)
                written += [f"{path.relative_to(SRC)}:{node.lineno}" for k, v in pairs
                            if isinstance(v, ast.Dict) and key_text(k).endswith((".T", ".alpha"))]
    assert written == []
    assert DEFAULT_T_RANGE == {"low": 1.0, "high": 10.0, "log": True} and DEFAULT_ALPHA_RANGE == {"low": 0.0,
                                                                                                  "high": 1.0}
    cfg = parse_config(dict(RAW))
    assert {p: (r.low, r.high, r.log) for p, r in default_space(cfg).items()} == {
        "distill.losses.kd.T": (1.0, 10.0, True), "distill.losses.kd.alpha": (0.0, 1.0, False)}


def test_the_benchmarks_search_kd_temperature_over_the_default_range_without_restating_it() -> None:
    """A benchmark's range for a T path (or a T_RANGE / ALPHA_RANGE name) is never a literal: it comes from
    kdkit.schemes.registry through bench/_protocol.py, so changing the default changes every search that uses it."""
    from kdkit.schemes.registry import DEFAULT_T_RANGE

    def literal(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Dict) or (isinstance(node, ast.Call) and bool(node.args)
                                              and all(isinstance(a, ast.Constant) for a in node.args))

    restated = []
    for path in sorted((SRC.parents[1] / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                restated += [f"{path.name}:{node.lineno}" for k, v in zip(node.keys, node.values, strict=True)
                             if str(getattr(k, "value", "")).endswith(".T") and literal(v)]
            if isinstance(node, ast.Assign) and {getattr(t, "id", "") for t in node.targets} & {"T_RANGE", "ALPHA",
                                                                                                 "ALPHA_RANGE"}:
                restated += [f"{path.name}:{node.lineno}"] if literal(node.value) else []
    assert restated == []
    import sys

    sys.path.insert(0, str(SRC.parents[1] / "bench"))
    import _protocol

    assert _protocol.T_RANGE == DEFAULT_T_RANGE == _protocol.log_range(1.0, 10.0)
