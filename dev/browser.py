"""Debian's Chromium, headless, for the tile map's browser test and ``make demo``'s screenshot.

The flags are those that let Chromium start quietly on a machine without internet (no background
networking, component updates, sync or QUIC) in a fresh profile.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)  # fmt: skip


def chromium() -> str:
    """The Chromium executable; ``make test`` installs Debian's ``chromium`` package."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("Chromium is not installed: `apt-get install chromium` (make test installs it).")
    return found


def render(
    url: str, *, screenshot: Path | None = None, size: tuple[int, int] = (1280, 760), wait_ms: int = 20_000
) -> str:
    """Load ``url``, let its scripts run (``wait_ms`` of virtual time; network waits are real),
    and return the DOM; with ``screenshot``, also save the page as a PNG."""
    with tempfile.TemporaryDirectory(prefix="gee-chromium-") as profile:
        common = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={wait_ms}",
                  f"--window-size={size[0]},{size[1]}"]  # fmt: skip
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return dom.stdout
