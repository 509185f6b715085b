"""The `weir` command line: a thin layer over the SDK and the stack.

Every command has --help; data commands take --json for machine output; a
weir error prints `error: ...` on stderr and exits 1 (2 for usage errors).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import WeirError

app = typer.Typer(help="weir: serve ML pipelines on Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
pipelines_app = typer.Typer(help="Pipelines: list, show, deploy, undeploy, status.",
                            no_args_is_help=True)
models_app = typer.Typer(help="Models: upload and list.", no_args_is_help=True)
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(models_app, name="models")

out = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _client() -> Any:
    from control.sdk.client import Client

    return Client()


def _settings() -> Any:
    from control.settings import Settings

    return Settings.discover()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(", ".join(map(str, v)) if isinstance(v, list) else str(v)
                        for v in (row.get(c, "") for c in columns)))
    out.print(table)


# -- the stack ------------------------------------------------------------------------
@app.command()
def up(detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once everything answers.")] = False,
       broker: Annotated[str | None, typer.Option(
           "--broker", help="Embedded broker: tansu (default, in memory) or kafka (Apache "
           "Kafka; needs Java and Maven). Also WEIR_BROKER.")] = None) -> None:
    """Start the embedded broker, Redis and the weir server (Ctrl-C stops them)."""
    from control.stack import up as stack_up

    settings = _settings()
    if broker is not None:
        if broker not in ("tansu", "kafka"):
            raise typer.BadParameter(f"{broker!r}: choose tansu or kafka", param_hint="--broker")
        settings = settings.model_copy(update={"broker": broker})
    stack_up(settings, detach=detach, say=err.print)


@app.command()
def down() -> None:
    """Stop the stack `weir up` started."""
    from control.stack import down as stack_down

    stack_down(_settings(), say=err.print)


@app.command(hidden=True)
def serve() -> None:
    """Run the HTTP server in the foreground (`weir up` does this for you)."""
    from control.server.app import serve as run_server

    run_server(_settings())


@app.command(hidden=True, context_settings={"allow_extra_args": True,
                                             "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a pipeline worker (the deployer starts these)."""
    from control.worker_main import main as worker_main

    raise typer.Exit(worker_main(ctx.args))


@app.command()
def demo() -> None:
    """Build, deploy and query a real pipeline on a fresh embedded stack, then stop it."""
    from control.demo.run import main as run_demo

    raise typer.Exit(run_demo())


# -- models ---------------------------------------------------------------------------
@models_app.command("upload")
def models_upload(name: str, path: Path, runtime: Annotated[str | None, typer.Option(help="onnx or python; guessed from the file name")] = None,
                  json_out: JsonOpt = False) -> None:
    """Upload a model file as a new version of NAME."""
    model = _client().upload_model(name, path, runtime=runtime)
    if json_out:
        _print_json(model._record)
    else:
        err.print(f"uploaded {model.name} version {model.version} (sha256 {model.sha})")


@models_app.command("list")
def models_list(json_out: JsonOpt = False) -> None:
    """List models (newest version of each)."""
    records = [m._record for m in _client().list_models()]
    if json_out:
        _print_json(records)
    else:
        _table(records, ["name", "version", "runtime", "sha", "created"])


# -- pipelines ------------------------------------------------------------------------
@pipelines_app.command("list")
def pipelines_list(json_out: JsonOpt = False) -> None:
    """List pipelines in the workspace."""
    infos = [p._info for p in _client().list_pipelines()]
    if json_out:
        _print_json(infos)
    else:
        _table(infos, ["name", "created", "last_updated", "deployed", "tags", "versions",
                       "steps", "published"])


@pipelines_app.command("show")
def pipelines_show(name: str, json_out: JsonOpt = False) -> None:
    """Show one pipeline, with its topics."""
    pipeline = _client().get_pipeline(name)
    info = {**pipeline._info, "topics": pipeline.topics(), "url": pipeline.url()}
    if json_out:
        _print_json(info)
    else:
        for key in ("name", "deployed", "deployed_version", "steps", "versions", "topics", "url"):
            out.print(f"[bold]{key}[/bold]: {info.get(key)}")


@pipelines_app.command("status")
def pipelines_status(name: str, json_out: JsonOpt = False) -> None:
    """Show a pipeline's deployment status."""
    status = _client().get_pipeline(name).status()
    if json_out:
        _print_json(status)
    else:
        out.print(f"[bold]{name}[/bold]: {status['status']}")
        for engine in status.get("engines", []):
            where = f" (remote, on {engine['ip']})" if engine.get("remote") else ""
            out.print(f"  {engine['name']}{where} {engine['status']} {engine.get('reason') or ''}")


@pipelines_app.command("versions")
def pipelines_versions(name: str, json_out: JsonOpt = False) -> None:
    """List a pipeline's versions, newest first."""
    versions = _client().get_pipeline(name).versions()
    rows = [v._row() for v in versions]
    if json_out:
        _print_json(rows)
    else:
        _table(rows, list(rows[0]) if rows else ["version"])


@pipelines_app.command("deploy")
def pipelines_deploy(name: str, version: Annotated[str | None, typer.Option(help="Version to deploy (default: newest).")] = None,
                     replicas: Annotated[int, typer.Option(help="Worker processes.")] = 1,
                     json_out: JsonOpt = False) -> None:
    """Deploy a pipeline version and wait until it runs."""
    from control.sdk.config import DeploymentConfigBuilder

    config = DeploymentConfigBuilder().replica_count(replicas).build()
    pipeline = _client().get_pipeline(name, version=version).deploy(config, quiet=json_out)
    if json_out:
        _print_json(pipeline.status())


@pipelines_app.command("undeploy")
def pipelines_undeploy(name: str) -> None:
    """Stop a pipeline's workers."""
    _client().get_pipeline(name).undeploy()
    err.print(f"{name} undeployed")


# -- data -----------------------------------------------------------------------------
@app.command()
def infer(pipeline: str, file: Path, json_out: JsonOpt = False) -> None:
    """Send FILE (.json pandas records, or .arrow) through PIPELINE and print the result."""
    import pyarrow as pa

    result = _client().get_pipeline(pipeline).infer_from_file(file)
    table = result if isinstance(result, pa.Table) else pa.Table.from_pandas(result, preserve_index=False)
    if json_out:
        _print_json(table.to_pylist())
    else:
        out.print(table.to_pandas().to_string())


@app.command("import")
def import_bundle(bundle: Path, json_out: JsonOpt = False) -> None:
    """Import a bundle written by pipeline.publish() and deploy it."""
    deployment = _client().import_bundle(bundle)
    if json_out:
        _print_json(deployment)
    else:
        err.print(f"imported {deployment['pipeline']} version {deployment['version']}; deploying")


@app.command()
def logs(pipeline: str, limit: Annotated[int, typer.Option(help="Most rows to show.")] = 100,
         valid: Annotated[bool | None, typer.Option(help="Only valid (true) or failing (false) rows.")] = None,
         json_out: JsonOpt = False) -> None:
    """Print a pipeline's newest log rows."""
    table = _client().get_pipeline(pipeline).logs(limit=limit, valid=valid, arrow=True)
    if json_out:
        _print_json(table.to_pylist())
    else:
        out.print(table.to_pandas().to_string())


def main() -> None:
    try:
        app()
    except WeirError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
