"""`weir worker`: run one worker process for a deployed pipeline version.

Started by the deployer (or a container in docker-compose). Reads the version
from the registry, finds model files in the artifact store (checked by sha256
before loading) and heartbeats to the registry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import socket
import sys

from control.artifacts import ArtifactStore
from control.registry import Registry
from control.settings import Settings, use_temp_under_home
from control.worker_ids import new_worker_id
from engine.answers import RESULT_FORMATS
from engine.runtimes.base import RuntimeOptions
from streams.admin import resolved
from streams.membership import MemberRecord
from streams.memory import parse_memory
from streams.plan import sidekick_steps
from streams.topics import TopicMap
from streams.worker import Worker
from streams.worker_spec import WorkerSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weir worker", description=__doc__)
    parser.add_argument("pipeline")
    parser.add_argument(
        "version", nargs="?", default=None, help="pipeline version (default: the one deployed now)"
    )
    parser.add_argument("--workspace", default="default")
    parser.add_argument("--replica", type=int, default=0)
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--role",
        choices=["main", "shadow", "sidekick"],
        default="main",
        help="main: the answer path; shadow: only the shadow challengers; "
        "sidekick: one sidekick step (--sidekick-step)",
    )
    parser.add_argument(
        "--deployment", default=None, help="the deployment's id (default: the deployed one's)"
    )
    parser.add_argument(
        "--sidekicks",
        type=_steps,
        default=None,
        help="the steps that run as sidekicks, e.g. 1,3 (default: the deployed one's)",
    )
    parser.add_argument(
        "--sidekick-step", type=int, default=None, help="the step a sidekick worker runs"
    )
    parser.add_argument(
        "--result-format",
        choices=RESULT_FORMATS,
        default=None,
        help="what answers are written in: each request's own format, or "
        "always arrow or json (default: the deployed one's, else request)",
    )
    parser.add_argument(
        "--memory",
        type=_memory,
        default=None,
        help='resident memory limit, e.g. "1Gi" or "512Mi" (default: none); '
        "over it the worker reports why and exits",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for ours in ("streams", "control"):  # a worker's own lifecycle (draining, drained), not Kafka's
        logging.getLogger(ours).setLevel(logging.INFO)

    settings = Settings.discover()
    use_temp_under_home(settings)
    if not settings.redis_url:
        print("weir worker: no Redis: run `weir up` or set WEIR_REDIS_URL", file=sys.stderr)
        return 2
    registry = Registry(settings.redis_url)
    deployment = registry.get_deployment(args.workspace, args.pipeline)
    if args.version is None:
        if deployment is None:
            print(f"weir worker: pipeline {args.pipeline!r} is not deployed", file=sys.stderr)
            return 2
        args.version = deployment.version
    elif args.worker_id is None and (deployment is None or deployment.version != args.version):
        # Started by hand (the deployer names its workers): a version not deployed would
        # answer part of the input with models a redeploy already replaced.
        deployed = f"version {deployment.version} is" if deployment else "no version is"
        print(
            f"weir worker: {deployed} deployed for pipeline {args.pipeline!r}, not "
            f"{args.version}; run `weir worker {args.pipeline}` to serve the deployed one",
            file=sys.stderr,
        )
        return 2
    version = registry.get_version(args.workspace, args.pipeline, args.version)
    if args.deployment is None or args.sidekicks is None:
        if deployment is None or deployment.version != args.version:
            print(
                f"weir worker: name the deployment of version {args.version} (--deployment, "
                "--sidekicks): it is not the deployed one",
                file=sys.stderr,
            )
            return 2
        args.deployment = args.deployment or deployment.id
        if args.sidekicks is None:
            args.sidekicks = set(sidekick_steps(version.definition, deployment.config.sidekicks))
        args.result_format = args.result_format or deployment.config.result_format
    if args.role == "sidekick" and args.sidekick_step not in args.sidekicks:
        print(
            f"weir worker: --sidekick-step must be one of the sidekick steps "
            f"{sorted(args.sidekicks)}",
            file=sys.stderr,
        )
        return 2
    artifacts = ArtifactStore(settings.artifacts_dir)
    spec = WorkerSpec(
        workspace=args.workspace,
        pipeline=args.pipeline,
        version=args.version,
        definition=version.definition,
        replica=args.replica,
        worker_id=args.worker_id
        or new_worker_id(
            version, args.role, args.replica, suffix=_host_tag(), sidekick=args.sidekick_step
        ),
        options=RuntimeOptions(
            threads=args.threads,
            device=args.device,
            env_root=settings.envs_dir,
            wheel_dir=settings.wheel_dir,
        ),
        memory_limit_bytes=args.memory,
        role=args.role,
        deployment=args.deployment,
        sidekicks=frozenset(args.sidekicks),
        sidekick_step=args.sidekick_step,
        result_format=args.result_format or "request",
    )
    worker_settings = asyncio.run(resolved(settings.worker_settings()))
    worker = Worker(
        spec,
        worker_settings,
        TopicMap.load(),
        lambda ref: artifacts.path(ref.sha),
        registry,
        claims=registry,
        members=MemberRecord(settings.run_dir / "members" / f"{spec.worker_id}.json"),
    )
    return worker.run()


def _host_tag() -> str:
    """This host's name without dashes: a stable, host-specific worker id suffix."""
    return re.sub(r"[^a-z0-9]", "", socket.gethostname().lower())[:16] or "host"


def _steps(text: str) -> set[int]:
    try:
        return {int(part) for part in text.split(",") if part}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give step indexes, e.g. 1,3") from None


def _memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


if __name__ == "__main__":
    sys.exit(main())
