"""Start-up cost side by side: `kdkit --help` and config mistakes against a bare `python -c "import torch"`.

    python bench/startup.py [--rounds 7]

Each round runs every command once, in turn (a fresh process each, as a user types it), so the machine's load
hits all of them alike; the median over rounds is compared with import torch's. Targets: at most
1.5x import torch for `kdkit --help` and for a config error.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MISTAKES = {  # the demo config with one mistake each: the schema, a model name, a loss argument
    "config error: epochs: 0": ("epochs: 30", "epochs: 0"),
    "config error: unknown model": ("name: cnn1d", "name: cnn1dd"),
    "config error: T: -1 (loss argument)": ("name: kd, T: 2.0", "name: kd, T: -1.0"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-record", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    demo = (ROOT / "configs" / "demo.yaml").read_text()
    scratch = Path(tempfile.mkdtemp(prefix="kdkit-startup-"))
    commands = {"python -c 'import torch'": [sys.executable, "-c", "import torch"],
                "kdkit --help": [str(bin_dir / "kdkit"), "--help"]}
    for name, (old, new) in MISTAKES.items():
        text = demo.replace(old, new, 1)
        if text == demo:
            raise SystemExit(f"configs/demo.yaml no longer contains {old!r}: update MISTAKES")
        path = scratch / f"{len(commands)}.yaml"
        path.write_text(text)
        commands[name] = [str(bin_dir / "kdkit"), "train", str(path)]
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    codes: dict[str, int] = {}
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        names = list(commands)
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            done = subprocess.run(commands[name], capture_output=True, text=True, cwd=scratch)
            seconds[name].append(time.perf_counter() - start)
            codes[name] = done.returncode
    base = statistics.median(seconds["python -c 'import torch'"])
    lines = [f"{args.rounds} interleaved rounds, a fresh process per command; load average {load:.1f} before.", "",
             "| command | exit code | median (s) | / import torch |", "|---|---|---|---|"]
    for name, values in seconds.items():
        lines.append(f"| `{name}` | {codes[name]} | {statistics.median(values):.2f} | "
                     f"{statistics.median(values) / base:.2f} |")
    lines += ["", "Target: `kdkit --help` and every config error at most 1.5x `import torch` (exit code 2 for an "
              "error)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        write_section("startup", body, "python bench/startup.py")


if __name__ == "__main__":
    main()
