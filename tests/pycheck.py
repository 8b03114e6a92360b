"""What the offline validators (tests/chart, tests/deploy) share: collecting failures and
running the pinned tools of the virtual environment they run in."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent
FAILED = []


def check(condition, message):
    """Records a failed check (printed now, counted at the end) instead of stopping."""
    if not condition:
        FAILED.append(message)
        print(f"  FAIL {message}")


def run(args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


def finish(success):
    if FAILED:
        print(f"\n{len(FAILED)} check(s) failed")
        sys.exit(1)
    print(f"\n{success}")
