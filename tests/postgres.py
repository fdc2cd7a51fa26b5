"""A throwaway PostgreSQL server for the tests of studies shared by several tuning workers: a fresh cluster in a
temp folder, on a free local port, trust authentication, removed afterwards. Needs Debian's `postgresql` package
(.ci/run installs it) and the psycopg driver (the `tune` extra); the tests that use it are skipped without them."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> str | None:
    """Why no server can be started here, or None when one can."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'kdkit[tune]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server() -> Iterator[str]:
    """Start a server; yields its SQLAlchemy URL (postgresql+psycopg://...)."""
    # PostgreSQL refuses to run as root: as root, the server runs as the postgres user, in a folder it can enter
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = tempfile.mkdtemp(prefix="kdkit-pg-", dir="/tmp")
    os.chmod(folder, 0o777)
    data, port = os.path.join(folder, "data"), _free_port()
    log = os.path.join(folder, "server.log")
    subprocess.run([*as_user, _bin("initdb"), "-D", data, "-U", "kdkit", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, _bin("pg_ctl"), "-D", data, "-l", log, "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://kdkit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, _bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """A new, empty database `name` on the server at server_url; its SQLAlchemy URL. Tests that share one server
    (starting one takes seconds) each get a database of their own, so no study of one test reaches another."""
    import psycopg

    with psycopg.connect(server_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
