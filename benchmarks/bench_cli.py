"""CLI start-up: how long `vidgen --help` takes, side by side with a bare interpreter and with `import torch`.

`vidgen --help` must not import torch (tests/test_cli.py checks that); this shows what that buys. Each command
runs in a fresh subprocess, as a user runs it (`python -m vidgen_cli ...`, the real entry point); the table gives
the best and the median wall-clock time of --repeats runs, after one warm-up run (the OS file cache is warm).

    python benchmarks/bench_cli.py              # about 10 s
    python benchmarks/bench_cli.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # run from a checkout without installing

COMMANDS = {
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    "vidgen --help": [sys.executable, "-m", "vidgen_cli", "--help"],
    "vidgen recipes": [sys.executable, "-m", "vidgen_cli", "recipes"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "vidgen info (imports torch, av)": [sys.executable, "-m", "vidgen_cli", "info"],
}


def wall_seconds(command: list[str], repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` runs of `command`, after one warm-up run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=env)  # warm-up: file cache, .pyc
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=env)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command")
    args = parser.parse_args()

    rows = [(label, wall_seconds(command, args.repeats)) for label, command in COMMANDS.items()]
    bare = min(rows[0][1])
    print(f"\nCLI start-up, {args.repeats} runs per command after a warm-up, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPU cores")
    header = f"{'command':<40} {'best s':>8} {'median s':>9} {'over bare python s':>19}"
    print(header + "\n" + "-" * len(header))
    for label, seconds in rows:
        best = min(seconds)
        print(f"{label:<40} {best:>8.3f} {statistics.median(seconds):>9.3f} {best - bare:>19.3f}")


if __name__ == "__main__":
    main()
