"""Times every command of the table "How long each command takes" (docs/getting-started.md) as a user runs it
(a fresh `kdkit` process, from a scratch directory holding the shipped configs), and prints measured / stated per row.

    python bench/readme_times.py [--only-fast] [--threads N] [--no-record]

The rows run in the page's order (later rows read the run directories of earlier ones). A ratio above 1 means
the page promises too little time on this machine; the load average is printed with each row, because a busy
machine makes every command slower.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from doc_pages import prepare_workdir, time_table_rows  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-fast", action="store_true", help="skip the rows the tests call slow")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every command")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    kdkit = shutil.which("kdkit", path=str(Path(sys.executable).parent)) or "kdkit"
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    lines = [f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}", "",
             "| command | stated (s) | measured (s) | measured / stated | load before |", "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(prefix="kdkit-readme-") as scratch:
        workdir = Path(scratch)
        prepare_workdir(workdir)
        for row in time_table_rows():
            if args.only_fast and row.slow:
                continue
            load = os.getloadavg()[0]
            start = time.perf_counter()
            done = subprocess.run([kdkit, *row.argv], cwd=workdir, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            status = "" if done.returncode == 0 else f" (exit {done.returncode}: {done.stderr.strip()[-200:]})"
            lines.append(f"| `{row.command}` | {row.seconds:g} | {seconds:.1f} | {seconds / row.seconds:.2f} | "
                         f"{load:.1f} |{status}")
            print(lines[-1], flush=True)
    if not args.no_record and not args.only_fast:
        command = "python bench/readme_times.py" + (f" --threads {args.threads}" if args.threads else "")
        write_section("readme_times", "\n".join(lines), command)


if __name__ == "__main__":
    main()
