"""Run the fuzz targets of fuzz/targets.py with atheris (libFuzzer), one after another.

    python fuzz/run.py --seconds 60              # CI: the time split over all targets
    python fuzz/run.py --runs 1000000            # a fixed number of inputs per target
    python fuzz/run.py --seconds 600 --targets tls,inflate --seed 0
    python fuzz/run.py --replay fuzz/crashes/frames_server/crash-...   # one input

Each target runs in its own process (``--worker``) with its seed corpus
(fuzz/corpus/<target>/) and earlier crash inputs (fuzz/crashes/<target>/), writing
new coverage into a scratch directory, never into the repository.  A crash input is
saved as ``fuzz/out/<target>/crash-*``; minimise it (``--worker T -- -minimize_crash=1
-runs=10000 FILE``) and put it into fuzz/crashes/<target>/ with the fix.  The last line
is ``fuzz: N executions, K crashes``; the exit code is 1 when K > 0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
STARTUP = 5  # seconds a worker takes before fuzzing (measured on a busy 2-core machine)

# libFuzzer's closing statistics (-print_final_stats=1), and its progress lines as a
# fallback when a crash cut the run short.
_EXECUTED = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_PROGRESS = re.compile(rb"^#(\d+)\s", re.MULTILINE)


def worker(name: str, libfuzzer_args: list[str]) -> None:
    """Fuzz one target in this process (libFuzzer parses ``libfuzzer_args``)."""
    import atheris  # type: ignore[import-untyped]

    sys.path.insert(0, str(HERE))
    # Coverage feedback comes from lwsbridge's own bytecode: instrument it as imported.
    with atheris.instrument_imports(include=["lwsbridge"]):
        import targets

    fn = targets.TARGETS[name].fn
    atheris.Setup([sys.argv[0], *libfuzzer_args], fn)
    atheris.Fuzz()


def run_target(
    name: str, seconds: int | None, runs: int | None, seed: int, verbose: bool, out_dir: Path
) -> tuple[int, bool, float]:
    """One target in a subprocess: (executions, crashed, wall seconds)."""
    sys.path.insert(0, str(HERE))
    import targets

    target = targets.TARGETS[name]
    out = out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    args = [
        f"-max_len={target.max_len}",
        "-timeout=10",
        "-rss_limit_mb=1024",
        "-print_final_stats=1",
        f"-seed={seed}",
        f"-artifact_prefix={out}/",
    ]
    if seconds is not None:
        args.append(f"-max_total_time={seconds}")
    if runs is not None:
        args.append(f"-runs={runs}")
    seeds = [HERE / "corpus" / name, HERE / "crashes" / name]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as scratch:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--", *args]
        cmd += [scratch, *(str(s) for s in seeds if s.is_dir())]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        wall = time.monotonic() - t0
    log = proc.stdout
    (out / "last.log").write_bytes(log)
    m = _EXECUTED.search(log)
    execs = int(m.group(1)) if m else max((int(x) for x in _PROGRESS.findall(log)), default=0)
    crashed = proc.returncode != 0
    if crashed or verbose:
        sys.stdout.write(log.decode("utf-8", "replace")[-6000:])
    return execs, crashed, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, help="total time, split over the targets by weight")
    ap.add_argument("--runs", type=int, help="inputs per target (instead of or with --seconds)")
    ap.add_argument("--targets", help="comma-separated target names (default: all)")
    ap.add_argument("--seed", type=int, default=1, help="libFuzzer -seed (0: random); CI uses 1")
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="targets run at once (default: 2, or 1 on one CPU)",
    )
    ap.add_argument("--out", type=Path, default=OUT, help="logs and crash inputs (fuzz/out)")
    ap.add_argument("--verbose", action="store_true", help="print libFuzzer's output")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run the target on these inputs")
    ap.add_argument("--target", help="with --replay: the target (default: the file's directory)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    ns = ap.parse_args()

    if ns.worker:
        worker(ns.worker, ns.rest)
        return 0
    sys.path.insert(0, str(HERE))
    import targets

    if ns.list:
        for t in targets.TARGETS.values():
            print(f"{t.name}: {(t.fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if ns.replay:
        for f in ns.replay:
            name = ns.target or Path(f).resolve().parent.name
            targets.TARGETS[name].fn(Path(f).read_bytes())
            print(f"{f}: {name}: ok")
        return 0
    if ns.seconds is None and ns.runs is None:
        ap.error("give --seconds and/or --runs")

    names = ns.targets.split(",") if ns.targets else list(targets.TARGETS)
    unknown = [n for n in names if n not in targets.TARGETS]
    if unknown:
        ap.error(f"unknown targets: {', '.join(unknown)}")
    weights = {n: targets.TARGETS[n].weight for n in names}
    jobs = max(1, min(ns.jobs, len(names)))
    total_execs = crashes = 0
    t_start = time.monotonic()

    lock = threading.Lock()
    unstarted = dict(weights)

    def one(n: str) -> tuple[int, bool, float]:
        secs = None
        if ns.seconds is not None:
            # The time left, shared by weight among this target and those not started
            # (up to ``jobs`` run at once), so the whole run takes about --seconds however
            # long the workers take to start.  libFuzzer counts whole seconds; a worker
            # needs a few seconds before fuzzing (instrumenting lwsbridge, running its
            # seed corpus), which is taken off its share.
            with lock:
                left = ns.seconds - (time.monotonic() - t_start)
                slots = min(jobs, len(unstarted))
                share = left * slots * weights[n] / sum(unstarted.values())
                del unstarted[n]
            secs = max(1, int(share - STARTUP))
        return run_target(n, secs, ns.runs, ns.seed, ns.verbose, ns.out)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for n, (execs, crashed, wall) in zip(names, pool.map(one, names), strict=True):
            total_execs += execs
            crashes += crashed
            rate = execs / wall if wall else 0.0
            print(
                f"fuzz: {n}: {execs} executions in {wall:.1f} s ({rate:.0f}/s)"
                + (f", CRASH (see {ns.out / n})" if crashed else ""),
                flush=True,
            )
    print(f"fuzz: total time {time.monotonic() - t_start:.1f} s", flush=True)
    print(f"fuzz: {total_execs} executions, {crashes} crashes", flush=True)
    return 1 if crashes else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
