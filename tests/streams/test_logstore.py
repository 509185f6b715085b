"""Tests for streams/logstore.py, log_schema.py and log_compaction.py, on real Parquet files."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from streams.log_schema import REQUIRED_SCHEMA, LogQueryError, LogSchemaError
from streams.logstore import LogStore

WS, PIPE = "default", "ccfraud"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def rows(
    n: int,
    *,
    start: datetime = T0,
    step: timedelta = timedelta(seconds=1),
    prefix: str = "r",
    invalid_every: int = 0,
    version: str = "v1",
    extra: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """``n`` log rows, one per request, ``step`` apart from ``start``."""
    failed = [invalid_every and i % invalid_every == 0 for i in range(n)]
    columns = {
        "time": pa.array([start + i * step for i in range(n)], pa.timestamp("ms", "UTC")),
        "request_id": pa.array([f"{prefix}{i:06d}" for i in range(n)]),
        "row": pa.array([0] * n, pa.int32()),
        "anomaly.count": pa.array([1 if f else 0 for f in failed], pa.int32()),
        "check_failures": pa.array([1 if f else 0 for f in failed], pa.int32()),
        "metadata.pipeline_version": pa.array([version] * n),
        "metadata.elapsed_ns": pa.array(range(n), pa.int64()),
        "metadata.model": pa.array(["m"] * n),
        "in.tensor": pa.array([[float(i)] * 3 for i in range(n)], pa.list_(pa.float32(), 3)),
        "out.a": pa.array([i * 0.5 for i in range(n)], pa.float64()),
    }
    columns.update(extra or {})
    return pa.table(columns)


def keys(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table.column("request_id").to_pylist(), table.column("row").to_pylist()))


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path, target_file_rows=1000)


def test_round_trip_newest_first(store: LogStore) -> None:
    store.append(WS, PIPE, rows(10).to_batches()[0])
    got = store.query(WS, PIPE, limit=None)
    assert got.num_rows == 10
    assert got.column("request_id").to_pylist() == [f"r{i:06d}" for i in reversed(range(10))]
    assert got.column("out.a").to_pylist()[0] == 4.5
    assert got.schema.field("time").type == pa.timestamp("ms", "UTC")
    assert got.schema.field("in.tensor").type == pa.list_(pa.float32(), 3)


def test_ties_on_time_order_by_request_then_row(store: LogStore) -> None:
    table = rows(4, step=timedelta(0))
    table = table.set_column(2, "row", pa.array([1, 0, 1, 0], pa.int32()))
    table = table.set_column(1, "request_id", pa.array(["b", "b", "a", "a"]))
    store.append(WS, PIPE, table)
    assert keys(store.query(WS, PIPE)) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]


def test_limit_returns_the_newest_rows_across_files(store: LogStore) -> None:
    store.append(WS, PIPE, rows(50, prefix="old"))
    store.append(WS, PIPE, rows(50, start=T0 + timedelta(minutes=5), prefix="new"))
    got = store.query(WS, PIPE, limit=7)
    assert got.column("request_id").to_pylist() == [f"new{i:06d}" for i in range(49, 42, -1)]
    assert store.query(WS, PIPE, limit=0).num_rows == 0


def test_limit_reads_on_while_older_files_overlap(store: LogStore) -> None:
    # The file with the newest row holds only one row; the next newest rows sit in an
    # overlapping file whose newest row is older, so the query must read it too.
    store.append(WS, PIPE, rows(20, step=timedelta(seconds=10), prefix="a"))
    store.append(WS, PIPE, rows(1, start=T0 + timedelta(seconds=500), prefix="b"))
    got = store.query(WS, PIPE, limit=3)
    assert got.column("request_id").to_pylist() == ["b000000", "a000019", "a000018"]


def test_limit_reads_a_file_whose_newest_row_ties_the_oldest_kept(store: LogStore) -> None:
    late = rows(2, step=timedelta(seconds=10)).set_column(1, "request_id", pa.array(["b", "c"]))
    store.append(WS, PIPE, late)
    store.append(WS, PIPE, rows(1).set_column(1, "request_id", pa.array(["a"])))
    assert store.query(WS, PIPE, limit=2).column("request_id").to_pylist() == ["c", "a"]


def test_duplicates_across_appends_come_back_once(store: LogStore) -> None:
    batch = rows(30)
    store.append(WS, PIPE, batch)
    store.append(WS, PIPE, batch.slice(10, 10))  # redelivered
    got = store.query(WS, PIPE, limit=None)
    assert got.num_rows == 30
    assert len(set(keys(got))) == 30
    assert store.query(WS, PIPE, limit=25).num_rows == 25
    assert len(set(keys(store.query(WS, PIPE, limit=25)))) == 25
    assert store.count(WS, PIPE) == 30


def test_duplicates_inside_one_batch_are_stored_once(store: LogStore) -> None:
    batch = rows(5)
    store.append(WS, PIPE, pa.concat_tables([batch, batch]))
    assert store.compact(WS, PIPE).rows_before == 5


def test_compaction_keeps_every_row_exactly_once(store: LogStore) -> None:
    for i in range(6):
        store.append(WS, PIPE, rows(300, start=T0 + timedelta(seconds=100 * i), prefix=f"p{i}"))
    store.append(WS, PIPE, rows(300, start=T0 + timedelta(seconds=100), prefix="p1"))  # redelivery
    before = store.query(WS, PIPE, limit=None)
    report = store.compact(WS, PIPE)
    after = store.query(WS, PIPE, limit=None)
    assert report.files_before == 7
    assert report.files_after == 2  # 1,800 distinct rows, about 1,000 per file
    assert report.rows_before == 2100
    assert report.rows_after == 1800 == store.count(WS, PIPE)
    assert after.equals(before)


def test_compaction_drops_rows_already_in_a_compacted_file(store: LogStore) -> None:
    store.append(WS, PIPE, rows(800))
    store.append(WS, PIPE, rows(100, prefix="x"))
    store.append(WS, PIPE, rows(100, start=T0 + timedelta(seconds=100), prefix="y"))
    store.compact(WS, PIPE)  # the 800-row file is big: only the small ones merge
    store.append(WS, PIPE, rows(50))  # a late redelivery of rows in the big file
    report = store.compact(WS, PIPE)
    assert report.rows_after == store.count(WS, PIPE) == 1000
    assert report.files_after == 2


def test_compaction_drops_a_repeat_of_a_compacted_files_last_row(store: LogStore) -> None:
    """Only big files whose time span meets the small files' are read for repeats: the
    spans' ends count (a repeat has its original's time)."""
    first = rows(800)
    store.append(WS, PIPE, first)
    store.append(WS, PIPE, rows(100, start=T0 + timedelta(hours=0.5), prefix="x"))
    store.compact(WS, PIPE)
    store.append(WS, PIPE, first.slice(799))  # its newest row, delivered again
    report = store.compact(WS, PIPE)
    assert report.rows_after == store.count(WS, PIPE) == 900


def test_valid_filter(store: LogStore) -> None:
    store.append(WS, PIPE, rows(100, invalid_every=10))
    invalid = store.query(WS, PIPE, valid=False, limit=None)
    assert invalid.num_rows == 10
    assert pc.all(pc.greater(invalid.column("anomaly.count"), 0)).as_py()
    assert invalid.column("check_failures").to_pylist()[0] == 1
    assert store.query(WS, PIPE, valid=True, limit=None).num_rows == 90
    assert store.query(WS, PIPE, valid=False, limit=3).column("request_id").to_pylist() == [
        "r000090",
        "r000080",
        "r000070",
    ]


def test_time_range_is_half_open(store: LogStore) -> None:
    store.append(WS, PIPE, rows(60))
    start, end = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    got = store.query(WS, PIPE, limit=None, start=start, end=end)
    assert got.column("request_id").to_pylist() == [f"r{i:06d}" for i in range(19, 9, -1)]
    start, end = datetime(2024, 5, 1, 10), datetime(2024, 5, 1, 10, 0, 5)
    naive = store.query(WS, PIPE, limit=None, start=start, end=end)
    assert naive.num_rows == 5


@pytest.mark.parametrize("bounds", [{"start": T0}, {"end": T0}])
def test_time_range_needs_both_ends(store: LogStore, bounds: dict[str, datetime]) -> None:
    store.append(WS, PIPE, rows(3))
    with pytest.raises(LogQueryError, match="both start and end"):
        store.query(WS, PIPE, **bounds)


def test_rows_land_in_their_hour_partition(store: LogStore, tmp_path: Path) -> None:
    store.append(WS, PIPE, rows(120, start=datetime(2024, 5, 1, 23, 59, tzinfo=UTC)))
    hours = sorted(f"{p.parent.name}/{p.name}" for p in (tmp_path / WS / PIPE).glob("*/hour=*"))
    assert hours == ["date=2024-05-01/hour=23", "date=2024-05-02/hour=00"]
    assert len(list((tmp_path / WS / PIPE / "date=2024-05-01" / "hour=23").iterdir())) == 1
    start, end = datetime(2024, 5, 2, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC)
    got = store.query(WS, PIPE, limit=None, start=start, end=end)
    assert got.num_rows == 60
    assert store.query(WS, PIPE, limit=None).num_rows == 120


def test_rows_out_of_time_order_each_land_in_their_hour(store: LogStore, tmp_path: Path) -> None:
    late = rows(120, start=datetime(2024, 5, 1, 23, 59, tzinfo=UTC))
    mixed = [i for pair in zip(range(60), range(119, 59, -1)) for i in pair]  # hours alternate
    store.append(WS, PIPE, late.take(pa.array(mixed)))
    per_hour = {}
    for part in (tmp_path / WS / PIPE).glob("*/hour=*"):
        (file,) = part.iterdir()
        per_hour[f"{part.parent.name}/{part.name}"] = pq.read_table(file).num_rows
    assert per_hour == {"date=2024-05-01/hour=23": 60, "date=2024-05-02/hour=00": 60}
    times = store.query(WS, PIPE, limit=None).column("time").cast(pa.int64()).to_pylist()
    assert times == sorted(times, reverse=True) and len(times) == 120


def test_text_columns_alone_are_dictionary_encoded(store: LogStore, tmp_path: Path) -> None:
    store.append(WS, PIPE, rows(50))
    (file,) = (tmp_path / WS / PIPE).glob("date=*/hour=*/*.parquet")
    group = pq.ParquetFile(file).metadata.row_group(0)
    encodings = {
        group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["request_id"]
    assert "RLE_DICTIONARY" not in encodings["out.a"]
    assert "RLE_DICTIONARY" not in encodings["in.tensor.list.element"]


def test_file_names_record_the_time_span(store: LogStore, tmp_path: Path) -> None:
    store.append(WS, PIPE, rows(10))
    (file,) = (tmp_path / WS / PIPE).glob("date=*/hour=*/*.parquet")
    lo, hi, _ = file.stem.split("_")
    assert (int(lo), int(hi)) == (int(T0.timestamp() * 1000), int(T0.timestamp() * 1000) + 9000)


def test_columns_selection(store: LogStore) -> None:
    store.append(WS, PIPE, rows(20))
    got = store.query(WS, PIPE, columns=["out.a", "time"], limit=2)
    assert got.column_names == ["out.a", "time"]
    assert got.column("out.a").to_pylist() == [9.5, 9.0]


def test_unknown_column_lists_available_columns(store: LogStore) -> None:
    store.append(WS, PIPE, rows(2))
    with pytest.raises(LogQueryError, match=r"out\.nope.*available columns: .*out\.a"):
        store.query(WS, PIPE, columns=["out.nope"])
    with pytest.raises(LogQueryError, match=r"out\.nope"):
        store.iter_batches(WS, PIPE, columns=["out.nope"])


def test_schema_change_across_versions(store: LogStore) -> None:
    v1 = rows(5, version="v1")
    v2 = rows(5, start=T0 + timedelta(minutes=1), prefix="v2-", version="v2")
    v2 = v2.drop_columns(["out.a"])
    v2 = v2.append_column("out.b", pa.array(["x"] * 5))
    store.append(WS, PIPE, v1)
    store.append(WS, PIPE, v2)
    got = store.query(WS, PIPE, limit=None)
    assert {"out.a", "out.b"} <= set(got.column_names)
    version = got.column("metadata.pipeline_version")
    by_version = {v: got.filter(pc.equal(version, v)) for v in ("v1", "v2")}
    assert by_version["v1"].column("out.b").null_count == 5
    assert by_version["v1"].column("out.a").null_count == 0
    assert by_version["v2"].column("out.a").null_count == 5
    assert by_version["v2"].column("out.b").to_pylist() == ["x"] * 5
    store.compact(WS, PIPE)  # v1 and v2 files of one hour merge into one file
    assert store.query(WS, PIPE, limit=None).sort_by("request_id").equals(got.sort_by("request_id"))


def test_numeric_columns_widen_and_clashing_types_are_refused(store: LogStore) -> None:
    store.append(WS, PIPE, rows(3, extra={"out.n": pa.array([1, 2, 3], pa.int32())}))
    store.append(WS, PIPE, rows(3, prefix="w", extra={"out.n": pa.array([4, 5, 6], pa.int64())}))
    assert store.query(WS, PIPE, columns=["out.n"]).schema.field("out.n").type == pa.int64()
    with pytest.raises(LogSchemaError, match="new name"):
        store.append(WS, PIPE, rows(3, prefix="s", extra={"out.n": pa.array(["a", "b", "c"])}))


def test_missing_required_column_is_refused(store: LogStore) -> None:
    with pytest.raises(LogSchemaError, match="request_id"):
        store.append(WS, PIPE, rows(3).drop_columns(["request_id"]))
    with pytest.raises(LogSchemaError, match="timestamp"):
        store.append(WS, PIPE, rows(3).set_column(0, "time", pa.array(["x"] * 3)))


def test_retention_by_age(tmp_path: Path) -> None:
    store = LogStore(tmp_path, retention=timedelta(days=1))
    now = datetime.now(UTC)
    store.append(WS, PIPE, rows(10, start=now - timedelta(days=3), prefix="old"))
    store.append(WS, PIPE, rows(10, start=now - timedelta(minutes=5), prefix="new"))
    report = store.compact(WS, PIPE)
    assert (report.rows_before, report.rows_after) == (20, 10)
    got = store.query(WS, PIPE, limit=None)
    assert set(got.column("request_id").to_pylist()) == {f"new{i:06d}" for i in range(10)}
    assert len(list((tmp_path / WS / PIPE).glob("date=*"))) == 1  # the empty date went too


def test_retention_by_size_drops_oldest_hours(tmp_path: Path) -> None:
    unbounded = LogStore(tmp_path / "a")
    for hour in range(3):
        unbounded.append(WS, PIPE, rows(200, start=T0 + timedelta(hours=hour), prefix=f"h{hour}"))
    hours = sorted((tmp_path / "a" / WS / PIPE).glob("*/hour=*"))
    sizes = [sum(f.stat().st_size for f in hour.iterdir()) for hour in hours]
    store = LogStore(tmp_path / "b", max_bytes=sizes[1] + sizes[2])
    for hour in range(3):
        store.append(WS, PIPE, rows(200, start=T0 + timedelta(hours=hour), prefix=f"h{hour}"))
    store.compact(WS, PIPE)
    kept = store.query(WS, PIPE, limit=None).column("request_id").to_pylist()
    assert {k[:2] for k in kept} == {"h1", "h2"}
    assert len(kept) == 400


def test_iter_batches_covers_every_row_once_oldest_first(store: LogStore) -> None:
    for i in range(3):
        start = T0 + timedelta(minutes=40 * i)
        store.append(WS, PIPE, rows(500, start=start, prefix=f"b{i}", invalid_every=7))
    store.append(WS, PIPE, rows(100, prefix="b0"))  # redelivery
    batches = list(store.iter_batches(WS, PIPE, batch_rows=128))
    assert max(b.num_rows for b in batches) <= 128
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 1500 == len(set(keys(table)))
    times = table.column("time").cast(pa.int64()).to_pylist()
    assert times == sorted(times)
    invalid = pa.Table.from_batches(
        store.iter_batches(WS, PIPE, valid=False, columns=["request_id"])
    )
    assert invalid.column_names == ["request_id"]
    assert invalid.num_rows == 3 * len(range(0, 500, 7))


def test_unknown_pipeline_returns_empty_table(store: LogStore) -> None:
    got = store.query(WS, "nope")
    assert got.num_rows == 0
    assert got.schema == REQUIRED_SCHEMA
    assert list(store.iter_batches(WS, "nope")) == []
    assert store.count(WS, "nope") == 0


def test_pipelines_lists_those_with_logs(store: LogStore) -> None:
    assert store.pipelines() == []
    store.append("ws2", "p", rows(1))
    store.append(WS, PIPE, rows(1))
    assert store.pipelines() == [(WS, PIPE), ("ws2", "p")]


def test_limit_matches_a_full_sort_over_overlapping_files(store: LogStore) -> None:
    # Twelve appends whose time ranges interleave, some redelivered: the newest-first limit
    # path (waves of files, early stop) must agree with sorting everything.
    for i in range(12):
        start = T0 + timedelta(seconds=i % 4)
        batch = rows(40, start=start, step=timedelta(seconds=4), prefix=f"w{i % 8}-")
        store.append(WS, PIPE, batch)
    for valid in (None, True, False):
        everything = store.query(WS, PIPE, limit=None, valid=valid)
        assert len(set(keys(everything))) == everything.num_rows
        for limit in (1, 5, 39, 100, 1000):
            got = store.query(WS, PIPE, limit=limit, valid=valid)
            assert got.equals(everything.slice(0, limit))


def test_queries_while_compacting_see_every_row_once(store: LogStore) -> None:
    for i in range(20):
        store.append(WS, PIPE, rows(100, start=T0 + timedelta(seconds=100 * i), prefix=f"c{i}-"))
    seen: list[tuple[int, int]] = []

    def read() -> None:
        for _ in range(10):
            table = store.query(WS, PIPE, limit=None)
            seen.append((table.num_rows, len(set(keys(table)))))

    reader = threading.Thread(target=read)
    reader.start()
    store.compact(WS, PIPE)
    reader.join()
    assert seen == [(2000, 2000)] * 10
    assert store.compact(WS, PIPE).files_after == 2


def test_appends_during_compaction_are_kept(store: LogStore) -> None:
    for i in range(10):
        store.append(WS, PIPE, rows(100, start=T0 + timedelta(seconds=i), prefix=f"a{i}-"))

    def write() -> None:
        for i in range(10):
            store.append(WS, PIPE, rows(100, start=T0 + timedelta(seconds=i), prefix=f"b{i}-"))

    writer = threading.Thread(target=write)
    writer.start()
    store.compact(WS, PIPE)
    writer.join()
    store.compact(WS, PIPE)
    assert store.count(WS, PIPE) == 2000
    assert store.query(WS, PIPE, limit=None).num_rows == 2000


def test_usage_counts_stored_rows_and_bytes_and_columns_are_listed(
    store: LogStore, tmp_path: Path
) -> None:
    assert store.usage(WS, PIPE) == (0, 0)
    assert store.column_names(WS, PIPE) == REQUIRED_SCHEMA.names
    store.append(WS, PIPE, rows(30))
    store.append(WS, PIPE, rows(10, prefix="s", extra={"out.b": pa.array([1.0] * 10)}))
    stored, size = store.usage(WS, PIPE)
    assert stored == 40
    assert size == sum(p.stat().st_size for p in (tmp_path / WS / PIPE).rglob("*.parquet"))
    assert {"out.a", "out.b", "in.tensor"} <= set(store.column_names(WS, PIPE))


def test_delete_removes_a_pipelines_rows_and_leaves_the_others(store: LogStore) -> None:
    store.append(WS, PIPE, rows(5))
    store.append(WS, "other", rows(3))
    store.delete(WS, PIPE)
    assert store.query(WS, PIPE).num_rows == 0
    assert store.pipelines() == [(WS, "other")]
    assert sorted(keys(store.query(WS, "other"))) == keys(rows(3))
    store.append(WS, PIPE, rows(2))  # the name is usable afresh
    assert store.query(WS, PIPE).num_rows == 2
