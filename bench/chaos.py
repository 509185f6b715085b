"""Chaos soak: numbered load through a pipeline's Kafka input topic and HTTP endpoint while a
seeded schedule of faults hits a fresh stack (bench/_chaos.py lists them: redeploys of every
kind, SIGKILL and SIGSTOP of workers, `weir serve` killed, Redis and Apache Kafka restarted).

Prints the faults (and what a user saw of each), records sent/answered/repeated/lost, the
recovery after each worker kill, and every broken guarantee; saves
``bench/results/chaos-<UTC timestamp>.json``. Exit code 1 when a guarantee broke: run the
same `--seed` again to replay its schedule.

    .venv/bin/python bench/chaos.py --broker kafka --minutes 10 --seed 7
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._brokers import BROKERS
from bench._chaos import FAULTS, recovery_summary, run_chaos
from bench._results import save


def show(report: dict[str, Any]) -> None:
    print(
        f"\n{report['broker']}: seed {report['seed']}, {report['seconds']:.0f} s, "
        f"{report['rate']:.0f} records/s"
    )
    for fault in report["faults"]:
        print(
            f"  {fault['started_s']!s:>7} s  {fault['kind']:<15} {fault['took_s']!s:>6} s  "
            f"{fault['outcome']}"
        )
    kills = [t for t in report.get("kill_recovery_s", []) if t is not None]
    print(
        f"  records: {report.get('sent')} sent, {report.get('answered')} answered, "
        f"{report.get('repeated')} repeated, lost {report.get('lost')}; "
        f"{report.get('refused_by_broker')} refused by the broker"
    )
    print(
        f"  HTTP: {report.get('http')}; status Running {report.get('settle_s')} s after "
        f"the last fault; worker kill to answering again: {recovery_summary(kills)}"
    )
    for problem in report["problems"]:
        print(f"  PROBLEM {problem}")
    if not report["problems"]:
        print("  every guarantee held")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=BROKERS, nargs="+", default=list(BROKERS))
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0, help="Kafka records a second")
    parser.add_argument(
        "--faults",
        nargs="+",
        choices=FAULTS,
        default=list(FAULTS),
        help="the kinds of fault to apply (default: all)",
    )
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="one fault at a time, 5-12 s apart (e.g. to time the recovery "
        "from a worker kill: --faults kill_worker --isolated)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each run's folder (WEIR_HOME, server and worker logs)",
    )
    args = parser.parse_args()
    reports = []
    for broker in args.broker:
        root = Path(tempfile.mkdtemp(prefix="weir-chaos-"))
        try:
            reports.append(
                run_chaos(
                    root,
                    broker,
                    seed=args.seed,
                    seconds=args.minutes * 60,
                    rate=args.rate,
                    kinds=args.faults,
                    burst=1 if args.isolated else 3,
                )
            )
        finally:
            if args.keep:
                print(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
        show(reports[-1])
    print(f"saved {save('chaos', {'runs': reports})}")
    sys.exit(1 if any(r["problems"] for r in reports) else 0)


if __name__ == "__main__":
    main()
