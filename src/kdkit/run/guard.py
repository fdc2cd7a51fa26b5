"""The run directory's guard: one run at a time, no silent mix of an old run and a new one.

- A lock file ``.kdkit.lock`` holds the owner's pid and host. A second run into a locked directory is refused with
  one line; a lock whose pid is dead on this host (a killed run) is stale and taken over.
- A directory holding a finished run (``results.json``, written last) or an interrupted one (config, checkpoints)
  is refused unless the run resumes it (``--resume``) or replaces it (``--overwrite``, which first removes the files
  and folders a run of any family writes, kdkit.run.rundir's RUN_FILES, RUN_FOLDERS and RUN_PATTERNS, and only
  those: a user's own files and `kdkit tune`'s tune/ stay).
- A resumed run removes the old run's final files (results, table, predictions) at its start, so a run that fails
  part-way never leaves old results beside new weights; they are written again, ``results.json`` last.
- Temp files of writes that a kill interrupted (``.*.tmp``, see kdkit.io.checkpoint) are removed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from kdkit.errors import RunDirError, StorageError
from kdkit.io.storage import check_writable, describe, storage_errors
from kdkit.run.rundir import FINAL_FILES, RUN_FILES, RUN_FOLDERS, RUN_PATTERNS, RunDir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class RunLock:
    """A held lock on a run directory; :meth:`release` (also at interpreter exit) removes it."""

    path: Path

    def release(self) -> None:
        try:
            held = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


def _live_owner(path: Path, me: dict) -> RunDirError | None:
    """The refusal for a lock file held by a live run (None when it is stale: its owner died, or is this process)."""
    try:
        owner = json.loads(path.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an empty or torn lock (killed while writing it): stale
    run_dir = path.parent
    if host != me["host"]:
        return RunDirError(f"{run_dir} is locked by a run on host {host} (pid {pid}); wait for it, or if that run "
                           f"is gone, delete {path}")
    if pid != os.getpid() and pid > 0 and _alive(pid):
        return RunDirError(f"{run_dir} is in use by another kdkit run (pid {pid}); wait for it to finish or "
                           "choose another output_dir")
    return None


def acquire(run_dir: Path) -> RunLock:
    """Create the lock atomically (O_EXCL), taking over a stale one; refuse a live owner with one line."""
    path = RunDir(run_dir).lock
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            fd = None
        except OSError as err:
            raise StorageError(describe(err, path)) from None
        if fd is not None:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            lock = RunLock(path)
            atexit.register(lock.release)
            return lock
        refusal = _live_owner(path, me)
        if refusal is not None:
            raise refusal
        path.unlink(missing_ok=True)  # stale: its owner is dead (or is this process, after a failed run)
    raise RunDirError(f"cannot take the lock {path}: other runs keep racing for it; choose another output_dir")


def state_of(run_dir: Path) -> str:
    """'empty', 'finished' (results.json exists) or 'unfinished' (kdkit files but no results)."""
    if RunDir(run_dir).results.is_file():
        return "finished"
    if any((run_dir / name).exists() for name in RUN_FILES + RUN_FOLDERS):
        return "unfinished"
    return "empty"


def clean_temp_files(run_dir: Path) -> None:
    """Temp files left by writes that a kill interrupted; called while holding the lock, so none is in use."""
    for tmp in run_dir.rglob(".*.tmp"):
        if tmp.is_file():
            with storage_errors(tmp):
                tmp.unlink(missing_ok=True)


def clear(run_dir: Path, names: tuple[str, ...]) -> None:
    with storage_errors(run_dir):
        for name in names:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)


def elastic_restart() -> bool:
    """Whether torchrun restarted this process's job after a failure (``--max-restarts``). Such a restart runs the
    same command line; kdkit does not resume on its own then, as it cannot tell the job's own checkpoints from an
    older run's that the first attempt refused: elastic jobs are launched with --resume (which starts a fresh
    directory as a new run)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def _refuse_state(run_dir: Path, state: str, resumable: bool) -> None:
    """A new run (neither --resume nor --overwrite) into a directory holding a finished or unfinished run."""
    if state == "finished":
        raise RunDirError(f"{run_dir} holds a finished run; pass --overwrite to replace it, or choose another "
                          "output_dir")
    if state == "unfinished" and elastic_restart():
        raise RunDirError(f"torchrun restarted this job, but its command has no --resume, so the restart cannot "
                          f"continue from the checkpoints in {run_dir}; launch elastic jobs (--max-restarts) "
                          "with --resume")
    if state == "unfinished" and not resumable:
        raise RunDirError(f"{run_dir} holds an unfinished run (interrupted?); pass --overwrite to replace it, or "
                          "choose another directory")
    if state == "unfinished":
        raise RunDirError(f"{run_dir} holds an unfinished run (interrupted?); pass --resume to continue it or "
                          "--overwrite to start over")


def _check_flags(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise RunDirError("give --resume or --overwrite, not both: one continues the run, the other replaces it")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output_dir {run_dir} is a file; choose a directory")


def precheck(run_dir: Path, resume: bool = False, overwrite: bool = False, resumable: bool = True) -> None:
    """The refusals of :func:`claim`, made before any data is read so that a run that cannot start says so at once;
    reads only, writes nothing. `claim` checks again under the lock, which settles a race between two runs."""
    run_dir = Path(run_dir)
    _check_flags(run_dir, resume, overwrite)
    if not run_dir.is_dir():
        return
    refusal = _live_owner(RunDir(run_dir).lock, {"pid": os.getpid(), "host": socket.gethostname()})
    if refusal is not None:
        raise refusal
    if not (resume or overwrite):
        _refuse_state(run_dir, state_of(run_dir), resumable)


def claim(run_dir: Path, resume: bool = False, overwrite: bool = False, needed_bytes: int = 0,
          resumable: bool = True) -> RunLock:
    """Lock `run_dir` for a new run, a resumed one (`resume`) or a replacing one (`overwrite`), after checking it
    is writable and has room for about `needed_bytes`; refuses with one line what would mix two runs. A command
    that cannot resume (`resumable=False`: kdkit tabular fit) offers only --overwrite."""
    _check_flags(run_dir, resume, overwrite)
    check_writable(run_dir, needed_bytes)
    lock = acquire(run_dir)
    try:
        clean_temp_files(run_dir)
        state = state_of(run_dir)
        if overwrite:
            clear(run_dir, RUN_FILES + RUN_FOLDERS + tuple(p.name for g in RUN_PATTERNS for p in run_dir.glob(g)
                                                           if p.is_file()))
        elif resume:
            clear(run_dir, FINAL_FILES)  # rewritten at the end: never old results beside new weights
        else:
            _refuse_state(run_dir, state, resumable)
    except BaseException:
        lock.release()
        raise
    return lock


def check_same_config(run_dir: Path, new: dict) -> None:
    """A resumed run must have the interrupted run's config: otherwise its stages would mix two experiments."""
    import yaml

    path = RunDir(run_dir).config
    if not path.is_file():
        return
    try:
        old = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        old = None
    if not isinstance(old, dict):
        raise RunDirError(f"cannot resume: {path} is damaged (not a YAML mapping); rerun with --overwrite to start "
                          "over")
    new = yaml.safe_load(yaml.safe_dump(new, sort_keys=False))  # the form it is saved in
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise RunDirError(f"cannot resume {run_dir}: the config differs from the interrupted run's in "
                          f"{', '.join(changed)}; resume with the same config, or rerun with --overwrite")
