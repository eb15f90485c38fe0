"""``python -m bench.profile``: where one end-to-end catch-up spends its time.

Runs the publisher on a simulator history (as the benchmark does) under py-spy, sampling only
the thread that holds the GIL, and prints the functions with the largest share of those
samples, by their own time and including what they call. Needs py-spy (``pip install
py-spy``); starts a local Kafka broker unless ``KAFKA_BOOTSTRAP_SERVERS`` is set.

    .venv/bin/python -m bench.profile --rows 300000 --entity Customers
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.__main__ import SETUP, Progress, kafka
from bench.catchup import catch_up
from bench.workload import SimulatorProcess, Workload, history_end_now


@dataclass(frozen=True)
class Profile:
    """Samples per frame (``function (file:line)``): its own, and including its callees."""

    total: int
    own: Counter[str]
    inclusive: Counter[str]


def read_raw(lines: Iterable[str]) -> Profile:
    """Aggregate py-spy's ``--format raw`` output: ``frame;frame;...;frame count`` lines,
    outermost frame first."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):  # a recursive frame counts once per sample
            inclusive[frame] += n
    return Profile(total, own, inclusive)


def format_profile(profile: Profile, top: int) -> str:
    lines = [f"{profile.total} samples of the GIL holder", "", "own time:"]
    for frame, n in profile.own.most_common(top):
        lines.append(f"  {100 * n / profile.total:5.1f}%  {frame}")
    lines += ["", "including callees:"]
    for frame, n in profile.inclusive.most_common(top):
        lines.append(f"  {100 * n / profile.total:5.1f}%  {frame}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--entity", default="Customers")
    parser.add_argument("--window-rows", type=int, default=SETUP.window_rows)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.stderr.write("py-spy is not installed: pip install py-spy\n")
        return 2
    say = Progress()
    workdir = Path(tempfile.mkdtemp(prefix="dcp-profile-"))
    raw = workdir / "profile.txt"
    workload = Workload(args.entity.lower(), {args.entity: args.rows}, history_end_now())
    setup = dataclasses.replace(SETUP, window_rows=args.window_rows)
    wrapper = [py_spy, "record", "--gil", "--format", "raw", "-r", str(args.rate), "-o", str(raw)]
    wrapper.append("--")
    with kafka(say) as (bootstrap, _broker, broker_pids):
        say(f"simulator ({args.rows:,} {args.entity} rows, pre-rendered)")
        sim_args = [*workload.simulator_args(max_rows=1_000_000), "--prerender"]
        with SimulatorProcess(sim_args, workdir / "simulator.log") as sim:
            say("publisher under py-spy")
            run = catch_up(
                bootstrap, workload, setup, sim, workdir, ours=[os.getpid(), *broker_pids],
                wrapper=wrapper,
            )  # fmt: skip
    say(f"{run.rows:,} rows in {run.seconds:.1f} s (slowed down by the sampling); {raw}")
    with raw.open() as f:
        sys.stdout.write(format_profile(read_raw(f), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
