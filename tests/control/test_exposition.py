"""What /metrics exposes, rendered from heartbeats and server facts and read back with
prometheus_client's own text parser."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from control.pipeline_lag import PartitionLag
from control.server.exposition import PipelineFacts, StoreUsage, WeirCollector
from control.server.routes.metrics import HttpMetrics
from streams.metrics import WorkerMetrics
from streams.status import WorkerStatus


def _worker(worker_id: str, rows: int) -> WorkerStatus:
    metrics = WorkerMetrics()
    metrics.received("step-0", records=1, rows=rows)
    metrics.batch("step-0", rows=rows, seconds=0.004)
    metrics.answered("step-0", rows=rows, latency_s=0.02)
    metrics.failed("step-1", rows=3, dead_lettered=True)
    return WorkerStatus(
        worker_id=worker_id,
        workspace="default",
        pipeline="p",
        version="v1",
        replica=0,
        pid=1,
        host="h",
        status="Running",
        processed=1,
        failed=1,
        time=datetime.now(UTC),
        metrics=metrics,
    )


def scrape() -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Every sample of a scrape of two workers, lag, a log store and HTTP requests, by
    family name."""
    facts = PipelineFacts(
        "default",
        "p",
        [_worker("w0", 100), _worker("w1", 28)],
        restarts={"w0": 2},
        lag=[PartitionLag("weir.default.p", "default.p.in", 0, 7)],
    )
    stores = [
        StoreUsage("default", "p", "", 128, 4096),
        StoreUsage("default", "p", "challenger", 64, 1024),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WeirCollector([facts], stores, HttpMetrics().families()))
    text = generate_latest(registry).decode()
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    found = [v for n, got, v in samples if n == name and labels.items() <= got.items()]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def test_rows_are_counted_per_worker_and_step() -> None:
    families = scrape()
    rows_in = families["weir_step_rows_in"]
    assert _value(rows_in, "weir_step_rows_in_total", worker="w0", step="step-0") == 100
    assert _value(rows_in, "weir_step_rows_in_total", worker="w1", step="step-0") == 28
    assert (
        _value(
            families["weir_step_dead_lettered"],
            "weir_step_dead_lettered_total",
            worker="w0",
            step="step-1",
        )
        == 1
    )
    assert (
        _value(
            families["weir_step_rows_failed"],
            "weir_step_rows_failed_total",
            worker="w1",
            step="step-1",
        )
        == 3
    )
    labels = next(got for _, got, _ in rows_in)
    assert labels.keys() == {"workspace", "pipeline", "version", "worker", "role", "step"}


def test_histograms_have_cumulative_buckets_count_and_sum() -> None:
    batch = scrape()["weir_step_batch_rows"]
    assert _value(batch, "weir_step_batch_rows_bucket", worker="w0", step="step-0", le="64") == 0
    assert _value(batch, "weir_step_batch_rows_bucket", worker="w0", step="step-0", le="128") == 1
    assert _value(batch, "weir_step_batch_rows_bucket", worker="w0", step="step-0", le="+Inf") == 1
    assert _value(batch, "weir_step_batch_rows_count", worker="w0", step="step-0") == 1
    assert _value(batch, "weir_step_batch_rows_sum", worker="w0", step="step-0") == 100
    latency = scrape()["weir_request_seconds"]
    assert _value(latency, "weir_request_seconds_bucket", worker="w1", le="0.025") == 1
    assert _value(latency, "weir_request_seconds_bucket", worker="w1", le="0.01") == 0


def test_restarts_lag_and_log_store_series() -> None:
    families = scrape()
    assert _value(families["weir_worker_restarts"], "weir_worker_restarts_total", worker="w0") == 2
    assert (
        _value(
            families["weir_consumer_lag"],
            "weir_consumer_lag",
            topic="default.p.in",
            partition="0",
            group="weir.default.p",
        )
        == 7
    )
    assert _value(families["weir_logstore_rows"], "weir_logstore_rows", challenger="") == 128
    assert (
        _value(families["weir_logstore_bytes"], "weir_logstore_bytes", challenger="challenger")
        == 1024
    )
    assert _value(families["weir_deployed_pipelines"], "weir_deployed_pipelines") == 1


def test_the_grafana_dashboard_graphs_only_series_weir_exposes() -> None:
    root = Path(__file__).resolve().parents[2] / "monitoring"
    dashboard = json.loads((root / "grafana" / "dashboards" / "weir.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for expr in exprs
        for name in re.findall(r"weir_[a-z_]+", expr)
    }
    assert used and used <= scrape().keys(), used - scrape().keys()
    datasource = yaml.safe_load(
        (root / "grafana" / "provisioning" / "datasources" / "weir.yml").read_text()
    )["datasources"][0]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["uid"]}
    scrape_config = yaml.safe_load((root / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape_config["metrics_path"] == "/metrics"
    assert scrape_config["authorization"]["type"] == "Bearer"  # /metrics needs the token
