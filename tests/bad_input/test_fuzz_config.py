"""Generated malformed YAML configs through `kdkit train`: each must be refused with exit code 2, one 'error:' line
naming the key, no traceback, and nothing written where the run would go.

Every example starts from a config that trains (hostile.TINY) and breaks exactly one thing: a value of the wrong
type or out of range at one key, a key given twice, or bytes that are not UTF-8. Examples are derandomized (the
same on every run); KDKIT_FUZZ_LONG=1 hunts with thousands of fresh ones.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hostile import TINY, assert_refused, cli, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from kdkit.config.devices import available_devices
from kdkit.config.yaml import dump_yaml

words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
bools = st.booleans()
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
huge = st.integers(min_value=2**32, max_value=2**80)

# key path -> values that key must refuse (strings are never numbers, booleans never counts, NaN never a setting)
BAD: dict[tuple, st.SearchStrategy] = {
    ("train", "epochs"): st.one_of(bools, words, st.integers(max_value=0),
                                   st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != int(v))),
    ("train", "batch_size"): st.one_of(bools, words, st.integers(max_value=0), huge),
    ("train", "lr"): st.one_of(bools, words, non_finite, st.floats(max_value=0, allow_nan=False)),
    ("train", "weight_decay"): st.one_of(bools, words, non_finite, st.floats(max_value=-1e-12, allow_nan=False)),
    ("train", "label_smoothing"): st.one_of(bools, words, st.floats(min_value=1, allow_nan=False)),
    ("train", "progress"): st.one_of(words, st.integers(), st.floats(allow_nan=False)),
    ("train", "device"): st.text("abcdgimnpsux:0123456789", min_size=1, max_size=8).filter(
        lambda d: d not in available_devices()),
    ("seed",): st.one_of(bools, words, st.integers(max_value=-1), huge, st.floats(allow_nan=False)),
    ("data", "val_fraction"): st.one_of(bools, words, non_finite, st.floats(max_value=0, allow_nan=False),
                                        st.floats(min_value=1, allow_nan=False)),
    ("data", "transfer_size"): st.one_of(bools, words, st.integers(max_value=-1)),
    ("distill", "losses", 0, "weight"): st.one_of(bools, words, non_finite,
                                                  st.floats(max_value=-1e-9, allow_nan=False)),
    ("distill", "losses", 0, "T"): st.one_of(bools, words, non_finite, st.floats(max_value=0, allow_nan=False)),
    ("distill", "losses", 0, "alpha"): st.one_of(bools, words, non_finite, st.floats(min_value=1.0001),
                                                 st.floats(max_value=-1e-9, allow_nan=False)),
    ("distill", "losses", 0, "warmup_epochs"): st.one_of(bools, words, st.integers(max_value=-1)),
    ("student", "params", "hidden"): st.one_of(words, st.lists(st.one_of(bools, words), min_size=1, max_size=3)),
    ("teacher", "train", "epochs"): st.one_of(bools, words, st.integers(max_value=0)),
}


def _tiny(out: Path) -> dict:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    cfg["teacher"] = {**cfg["teacher"], "train": {}}
    cfg["student"] = {**cfg["student"], "params": dict(cfg["student"]["params"])}
    cfg["distill"] = {"losses": [dict(cfg["distill"]["losses"][0])]}
    cfg["output_dir"] = str(out)
    return cfg


def _set(cfg: dict, path: tuple, value: object) -> None:
    node = cfg
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _train_refuses(make_text, *needles: str) -> str:
    """`kdkit train` on the text make_text(run_dir) gives: refused, naming `needles`, run_dir never created."""
    with tempfile.TemporaryDirectory() as tmp:
        config, run_dir = Path(tmp) / "config.yaml", Path(tmp) / "run"
        text = make_text(run_dir)
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
        line = assert_refused(cli(["train", config]), *needles)
        assert not run_dir.exists(), "a refused config must not create its output directory"
        return line


@pytest.mark.fuzz_long
@fuzz_settings(examples=80)
@given(st.sampled_from(sorted(BAD, key=str)).flatmap(lambda path: st.tuples(st.just(path), BAD[path])))
def test_a_bad_value_is_refused_naming_its_key(case):
    path, value = case

    def config(run_dir: Path) -> str:
        cfg = _tiny(run_dir)
        _set(cfg, path, value)
        return dump_yaml(cfg)

    _train_refuses(config, "config error at " + ".".join(map(str, path[:3])))


SECTIONS = ["seed: 3", "train: {epochs: 2}", "teacher: {name: mlp}", "data: {name: digits}", "distill: {losses: []}"]


@pytest.mark.fuzz_long
@fuzz_settings(examples=15)
@given(st.sampled_from(SECTIONS), st.booleans())
def test_a_key_given_twice_is_refused_with_both_lines(extra, first):
    texts = []

    def config(run_dir: Path) -> str:
        body = dump_yaml(_tiny(run_dir))
        texts.append(f"{extra}\n{body}" if first else f"{body}{extra}\n")
        return texts[-1]

    key = extra.split(":")[0]
    line = _train_refuses(config, f"'{key}'", "twice")
    rows = [n + 1 for n, row in enumerate(texts[0].splitlines()) if row.startswith(f"{key}:")]
    assert f"line {rows[0]} and line {rows[1]}" in line


@pytest.mark.fuzz_long
@fuzz_settings(examples=25)
@given(st.data())
def test_bytes_that_are_not_utf8_are_refused_with_their_line(data):
    junk = data.draw(st.sampled_from([b"\xff", b"\xe9", b"\x80\x80", b"\xc3", b"\x00"]))
    fraction = data.draw(st.floats(0, 1))
    where = []

    def config(run_dir: Path) -> bytes:
        body = dump_yaml(_tiny(run_dir)).encode()
        at = int(fraction * len(body))
        while 0 < at < len(body) and body[at] & 0xC0 == 0x80:  # keep multi-byte characters whole
            at -= 1
        where.append(body[:at].count(b"\n") + 1)
        return body[:at] + junk + body[at:]

    line = _train_refuses(config, "config.yaml")
    assert f"line {where[0]}" in line and (("not UTF-8" in line) or ("binary" in line))
