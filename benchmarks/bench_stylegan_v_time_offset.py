"""StyleGAN-V sampling far along the time axis: peak memory and wall time of `vidgen sample --time-offset X`.

Each offset runs the real CLI in its own process under `/usr/bin/time -v` (peak resident set size of the whole
process), with an address-space cap so that a run that would exhaust the machine's memory fails instead. The memory
of sampling a window of frames should not depend on where the window lies (issue #21, item 6).

    python benchmarks/bench_stylegan_v_time_offset.py                       # trains a 2-step tiny run first
    python benchmarks/bench_stylegan_v_time_offset.py --run /tmp/sgv-run --offsets 0 1e8 1e12
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"


def train_tiny_run(out: Path) -> None:
    """Two steps of stylegan-v-tiny with the registry's test overrides: a real run directory in seconds."""
    from vidgen.models.registry import get_backend_spec

    overrides = [arg for item in get_backend_spec("stylegan-v").test_overrides for arg in ("--set", item)]
    subprocess.run([sys.executable, "-m", "vidgen_cli", "train", "stylegan-v-tiny", "--out", str(out),
                    "--max-steps", "2", *overrides], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def sample_once(run: Path, offset: str, args: argparse.Namespace) -> dict:
    """Peak RSS (MB), wall seconds and exit status of one `vidgen sample` at `offset`."""
    cap = int(args.mem_cap_gb * 2 ** 30)

    def limit_memory() -> None:  # in the child: an allocation past the cap fails instead of waking the OOM killer
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryDirectory() as out:
        command = [TIME, "-v", sys.executable, "-m", "vidgen_cli", "sample", str(run), "--out", out,
                   "--num", str(args.num), "--frames", str(args.frames), "--time-offset", offset]
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout,
                                  preexec_fn=limit_memory)
        except subprocess.TimeoutExpired:
            return {"offset": offset, "rss_mb": None, "seconds": time.perf_counter() - start, "status": "timeout"}
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    last = proc.stderr.strip().splitlines()
    error = next((line for line in last if "Error" in line), "")
    return {"offset": offset, "rss_mb": int(peak.group(1)) / 1024 if peak else None,
            "seconds": time.perf_counter() - start,
            "status": "ok" if proc.returncode == 0 else f"exit {proc.returncode} {error.strip()[:60]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a StyleGAN-V run directory (default: train a tiny one)")
    parser.add_argument("--offsets", nargs="+", default=["0", "1e8", "1e12"])
    parser.add_argument("--num", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--mem-cap-gb", type=float, default=8.0, help="address-space cap of each sampling process")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a sampling process is stopped")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            train_tiny_run(run)
        rows = [sample_once(run, offset, args) for offset in args.offsets]

    print(f"vidgen sample --num {args.num} --frames {args.frames} (cap {args.mem_cap_gb:g} GB)")
    print(f"{'time offset':>12}  {'peak RSS MB':>11}  {'wall s':>7}  status")
    for row in rows:
        rss = f"{row['rss_mb']:.0f}" if row["rss_mb"] is not None else "-"
        print(f"{row['offset']:>12}  {rss:>11}  {row['seconds']:>7.1f}  {row['status']}")


if __name__ == "__main__":
    main()
