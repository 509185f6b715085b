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
from rich.markup import escape

from control._cli_output import (
    err,
    out,
    print_json,
    row_columns,
    row_line,
    rows_table,
    table,
)
from control.pipeline_status import PipelineStatus
from engine.errors import WeirError

app = typer.Typer(
    help="weir: serve ML pipelines on Kafka.", no_args_is_help=True, pretty_exceptions_enable=False
)
pipelines_app = typer.Typer(
    help="Pipelines: list, show, deploy, undeploy, status, delete.", no_args_is_help=True
)
models_app = typer.Typer(help="Models: upload, list and delete.", no_args_is_help=True)
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(models_app, name="models")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
WideOpt = Annotated[bool, typer.Option("--wide", help="Every field, in full.")]
ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def _client() -> Any:
    from control.sdk.client import Client

    return Client()


def _settings() -> Any:
    from control.settings import Settings

    return Settings.discover()


# -- the stack ------------------------------------------------------------------------
@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once everything answers.")
    ] = False,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            help="Embedded broker: tansu (default, in memory) or kafka (Apache "
            "Kafka; needs Java and Maven). Also WEIR_BROKER.",
        ),
    ] = None,
) -> None:
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


@app.command(
    hidden=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
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
def models_upload(
    name: str,
    path: ExistingFile,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime", help="onnx or python; guessed from the file name (.onnx; .py or .zip)"
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Upload a model file as a new version of NAME."""
    model = _client().upload_model(name, path, runtime=runtime)
    if json_out:
        print_json(model.to_dict())
    else:
        err.print(f"uploaded {model.name} version {model.version} (sha256 {model.sha})")


@models_app.command("list")
def models_list(wide: WideOpt = False, json_out: JsonOpt = False) -> None:
    """List models (newest version of each)."""
    records = [m.to_dict() for m in _client().list_models()]
    if json_out:
        print_json(records)
        return
    columns = ["name", "version", "runtime", "created"]
    table(records, [*columns, "sha", "file_name", "tags"] if wide else columns, wide=wide)


@models_app.command("delete")
def models_delete(name: str) -> None:
    """Delete every version of model NAME (refused while a pipeline uses it)."""
    _client().delete_model(name)
    err.print(f"model {name} deleted")


# -- pipelines ------------------------------------------------------------------------
PIPELINE_COLUMNS = ["name", "deployed", "steps", "versions", "last_updated"]


@pipelines_app.command("list")
def pipelines_list(wide: WideOpt = False, json_out: JsonOpt = False) -> None:
    """List pipelines in the workspace."""
    infos = [p.to_dict() for p in _client().list_pipelines()]
    if json_out:
        print_json(infos)
        return
    table(
        infos,
        [
            "name",
            "created",
            "last_updated",
            "deployed",
            "deployed_version",
            "tags",
            "versions",
            "steps",
            "published",
        ]
        if wide
        else PIPELINE_COLUMNS,
        wide=wide,
    )


@pipelines_app.command("show")
def pipelines_show(name: str, json_out: JsonOpt = False) -> None:
    """Show one pipeline, with its topics."""
    pipeline = _client().get_pipeline(name)
    info = {**pipeline.to_dict(), "topics": pipeline.topics(), "url": pipeline.url()}
    if json_out:
        print_json(info)
    else:
        for key in ("name", "deployed", "deployed_version", "steps", "versions", "topics", "url"):
            out.print(f"[bold]{key}[/bold]: {escape(str(info.get(key)))}")


@pipelines_app.command("status")
def pipelines_status(name: str, json_out: JsonOpt = False) -> None:
    """Show a pipeline's deployment status."""
    status = _client().get_pipeline(name).status()
    if json_out:
        print_json(status)
    else:
        shown = PipelineStatus.model_validate(status)
        out.print(f"[bold]{name}[/bold]: {escape(shown.status)}")
        for engine in shown.engines:
            where = f" (remote, on {engine.ip})" if engine.remote else ""
            out.print(f"  {engine.name}{where} {engine.status} {engine.reason or ''}", markup=False)


@pipelines_app.command("versions")
def pipelines_versions(name: str, wide: WideOpt = False, json_out: JsonOpt = False) -> None:
    """List a pipeline's versions, newest first."""
    rows = [v.to_dict() for v in _client().get_pipeline(name).versions()]
    if json_out:
        print_json(rows)
        return
    columns = ["version", "creation_time", "deployed", "steps"]
    table(rows, [*columns, "last_updated_time", "tags"] if wide else columns, wide=wide)


@pipelines_app.command("deploy")
def pipelines_deploy(
    name: str,
    version: Annotated[
        str | None, typer.Option(help="Version to deploy (default: newest).")
    ] = None,
    replicas: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    result_format: Annotated[
        str,
        typer.Option(
            help="Answers on the result topic: request (each in its request's "
            "format), arrow or json."
        ),
    ] = "request",
    json_out: JsonOpt = False,
) -> None:
    """Deploy a pipeline version and wait until it runs."""
    from control.sdk.config import DeploymentConfigBuilder

    builder = DeploymentConfigBuilder().replica_count(replicas)
    config = builder.result_format(result_format).build()  # type: ignore[arg-type]
    pipeline = _client().get_pipeline(name, version=version).deploy(config, quiet=json_out)
    if json_out:
        print_json(pipeline.status())


@pipelines_app.command("undeploy")
def pipelines_undeploy(name: str) -> None:
    """Stop a pipeline's workers."""
    _client().get_pipeline(name).undeploy()
    err.print(f"{name} undeployed")


@pipelines_app.command("delete")
def pipelines_delete(name: str) -> None:
    """Delete pipeline NAME, its versions and its logs (undeploy it first)."""
    _client().delete_pipeline(name)
    err.print(f"pipeline {name} deleted")


# -- data -----------------------------------------------------------------------------
@app.command()
def infer(
    pipeline: str, file: ExistingFile, wide: WideOpt = False, json_out: JsonOpt = False
) -> None:
    """Send FILE (.json pandas records, or .arrow) through PIPELINE and print the result."""
    import pyarrow as pa

    result = _client().get_pipeline(pipeline).infer_from_file(file)
    rows = (
        result
        if isinstance(result, pa.Table)
        else pa.Table.from_pandas(result, preserve_index=False)
    )
    if json_out:
        print_json(rows.to_pylist())
    else:
        rows_table(rows, wide=wide)


@app.command("import")
def import_bundle(bundle: ExistingFile, json_out: JsonOpt = False) -> None:
    """Import a bundle written by pipeline.publish() and deploy it."""
    deployment = _client().import_bundle(bundle)
    if json_out:
        print_json(deployment)
    else:
        err.print(f"imported {deployment['pipeline']} version {deployment['version']}; deploying")


@app.command()
def logs(
    pipeline: str,
    limit: Annotated[int, typer.Option(help="Most rows to show.")] = 100,
    valid: Annotated[
        bool | None,
        typer.Option(
            "--valid/--invalid",
            help="Only rows that passed (--valid) or failed (--invalid) their checks.",
        ),
    ] = None,
    wide: WideOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Print a pipeline's newest log rows."""
    rows = _client().get_pipeline(pipeline).logs(limit=limit, valid=valid, arrow=True)
    if json_out:
        print_json(rows.to_pylist())
    else:
        rows_table(rows, wide=wide)


@app.command()
def tail(
    pipeline: str,
    log_rows: Annotated[
        bool,
        typer.Option("--logs", help="Follow the pipeline's log rows instead of its result topic."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per row.")] = False,
) -> None:
    """Follow PIPELINE's answers on its result topic as they arrive (or its log rows with
    --logs), like `kcat -C` or `kubectl logs -f`; Ctrl-C stops."""
    source = "log rows" if log_rows else "result topic"
    following = (
        _client()
        .get_pipeline(pipeline)
        .tail(
            logs=log_rows,
            ready=lambda: err.print(f"following {pipeline}'s {source} (Ctrl-C to stop)"),
        )
    )
    try:
        for rows in following:
            for row in rows.to_pylist():
                if json_out:
                    sys.stdout.write(json.dumps(row, default=str) + "\n")
                else:
                    out.print(
                        row_line(
                            row,
                            row_columns(rows.schema.names, wide=False)
                            + (["error"] if "error" in row else []),
                        ),
                        markup=False,
                        soft_wrap=True,
                    )
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        following.close()


# -- the token ------------------------------------------------------------------------
token_app = typer.Typer(help="The server's bearer token.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("rotate")
def token_rotate() -> None:
    """Issue a new bearer token: the server requires it at once and refuses the old one;
    workers keep running. stack.json gets it (printed nowhere); clients made before
    must be made again."""
    from control.credentials import rotate

    rotate(_settings())
    err.print("token rotated: the new one is in stack.json (and WEIR_HOME/token)")


def main() -> None:
    try:
        app()
    except WeirError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)


if __name__ == "__main__":
    main()
