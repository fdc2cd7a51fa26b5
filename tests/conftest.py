import contextlib
import io
import os
import shutil

# Two torch threads on a 2-core machine that is also running something else spin-wait badly; tests stay serial.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _own_teacher_cache(tmp_path_factory, monkeypatch):
    """Each test keeps distill.cache_teacher's files in a folder of its own, never in the user's ~/.cache, so no
    test reads outputs another test wrote (subprocesses inherit the variable)."""
    monkeypatch.setenv("KDKIT_CACHE_DIR", str(tmp_path_factory.mktemp("teacher-cache")))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny run (tests/hostile.py's TINY config, its cost timed with the quick plan) for the hostile-input
    and fuzzing tests to damage copies of or to predict with."""
    from hostile import TINY, cli

    from kdkit.config.yaml import dump_yaml

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "c.yaml").write_text(dump_yaml({**TINY, "output_dir": str(folder / "run")}))
    done = cli(["train", folder / "c.yaml", "--quick-timing"])
    assert done.code == 0, done.err + done.crash
    return folder / "run"


@pytest.fixture(scope="module")
def quick_timing():
    """Latency and throughput timed with the quick plan (`kdkit demo --quick`'s: 3 short interleaved rounds instead
    of 7 of at least 50 ms each) in this module's in-process runs, for tests that check what a run writes or how it
    fails, not how precisely it times the models (tests/measure/test_cost.py checks the timing plans themselves); a
    `kdkit train` started as a process of its own takes --quick-timing instead."""
    from kdkit.measure import cost

    full = cost.measure

    def measure(models, input_shape, example=None, plan=None, threads=None):
        return full(models, input_shape, example, plan or cost.Plan.quick(), threads)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cost, "measure", measure)
        yield


@pytest.fixture(scope="session")
def demo_quick(tmp_path_factory):
    """`kdkit demo --quick` (seed 0), run once for the whole session: (its run directory, what it printed). Modules
    read a copy of their own (demo_quick_copy), so what one module adds to a run never reaches another."""
    from kdkit.cli import main

    folder = tmp_path_factory.mktemp("demo_quick")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("KDKIT_CACHE_DIR", str(folder / "teacher-cache"))  # not the user's ~/.cache
        with pytest.raises(SystemExit) as done:  # the command line exits 0 when all went well
            main(["demo", "--quick", "-o", str(folder / "run")])
    assert done.value.code == 0, f"kdkit demo --quick exited with {done.value.code}"
    return folder / "run", printed.getvalue()


@pytest.fixture(scope="session")
def demo_quick_copy(demo_quick, tmp_path_factory):
    """copy(name): a copy of the session's `kdkit demo --quick` run, as a new folder `<name>N/run`."""

    def copy(name: str):
        out = tmp_path_factory.mktemp(name) / "run"
        shutil.copytree(demo_quick[0], out)
        return out

    return copy


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server (tests/postgres.py) for the whole session; its URL."""
    import postgres

    with postgres.server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database of this test's own on the session's PostgreSQL server; its SQLAlchemy URL."""
    import re

    import postgres

    return postgres.fresh_database(postgres_server, re.sub(r"\W+", "_", request.node.name).lower()[:60])
