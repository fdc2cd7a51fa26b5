"""The configs `kdkit demo` runs, shipped with the package (kdkit/config/demos/*.yaml, the same files as the
repository's configs/, which `kdkit train configs/NAME.yaml` runs; a test keeps them identical)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from kdkit.config.yaml import load_yaml


def demo_yaml(name: str) -> dict[str, Any]:
    """The shipped config `name` (e.g. "demo.yaml") as a mapping, as `kdkit train` reads the file."""
    return load_yaml((resources.files("kdkit.config") / "demos" / name).read_text(encoding="utf-8"))
