"""The package is fully typed (it ships py.typed): mypy --strict passes on it, its tests and the
example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def test_mypy_strict() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(HERE / "pyproject.toml")],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
