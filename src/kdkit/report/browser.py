"""Headless Chromium, for pictures of a report (the screenshot in docs/results.md) and for checking that it renders.

Chromium is not a Python dependency: it is looked up on PATH (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from kdkit.errors import ConfigError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# no network, no first-run UI, no GPU: a report is a local file and must render without any of them
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--mute-audio")


def find_chromium() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def run_chromium(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a throw-away profile; ConfigError when it is not installed or fails."""
    exe = find_chromium()
    if exe is None:
        raise ConfigError("no Chromium found on PATH; install it (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="kdkit-chromium-") as profile:
        proc = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"chromium exited with code {proc.returncode}: {last}")
    return proc


def screenshot(html: str | Path, png: str | Path, width: int = 1280, height: int = 1600) -> Path:
    """A PNG of the top `height` pixels of an HTML file as Chromium renders it at `width`."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    run_chromium([f"--screenshot={png}", f"--window-size={width},{height}", "--virtual-time-budget=5000",
                  Path(html).resolve().as_uri()])
    if not png.is_file():
        raise ConfigError(f"chromium did not write {png}")
    return png


def dump_dom(html: str | Path) -> str:
    """The DOM after load (and after the page's scripts ran), serialized by Chromium."""
    return run_chromium(["--dump-dom", "--virtual-time-budget=5000", Path(html).resolve().as_uri()]).stdout
