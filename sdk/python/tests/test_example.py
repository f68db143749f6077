"""examples/demo.py run as a user would, against a real setpoint dev."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import Server

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_demo_prints_the_value_and_a_change(server: Server) -> None:
    server.put("/myapp/database/host", "localhost")
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--address", server.address, "--events", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == "/myapp/database/host = 'localhost' (version 1, stale=False)\n"
        assert proc.stdout.readline() == "watching /myapp\n"
        server.put("/myapp/database/host", "new-host.internal")
        out, err = proc.communicate(timeout=15)
        assert out == "changed /myapp/database/host: 'localhost' -> 'new-host.internal' (version 2)\n"
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
