"""How many rows one onnxruntime call takes on a CPU, learned from the model's own chunks.

A worker merges messages into chunks of up to 4,096 rows (streams.settings
`max_batch_rows`), and onnxruntime runs a big chunk in slices. The best slice depends
on the model: a cheap one (a few trees) costs mostly per call, so bigger slices cost
less per row; a compute-heavy one costs less per row in slices small enough that its
activations stay in the CPU's caches. Measured on one thread (2-core machine,
2026-12-05), microseconds per row: the bench's heavy MLP (hidden layers 512, 512,
256) 5.18 in 256-row slices, 5.59 in 1,024-row ones, 6.33 in 4,096; the diabetes
gradient-boosted trees 0.026, 0.010 and 0.005.

So a model's big chunks (of at least the biggest candidate's rows), after its first
few, are run in each candidate's slices in turn and timed whole; from then on its
slices are the candidate whose chunks took the least time per row (by the median of
`TRIALS` chunks each). Whole chunks are compared, not single calls: a chunk's first
call runs with the caches cold from the work between chunks, and that cost would
weigh more on small slices' first calls. The first big chunks are left out
(onnxruntime sets up its memory then), and smaller chunks run in one call, untimed:
a lone message runs cold (in a worker, 256-row chunks took 8.4 microseconds per row
against 5.6-5.9 in slices of big chunks).

Example:
    sizer = SliceSizer("heavy")
    rows = sizer.slice_rows(4096)          # a candidate, until one is chosen
    sizer.ran(4096, seconds=0.022)         # the whole chunk, after its last slice
"""

from __future__ import annotations

import logging
import statistics

log = logging.getLogger(__name__)

CANDIDATES: tuple[int, ...] = (256, 1024)
"""The slice sizes tried, in rows. 1,024 was the one fixed size before; 256 is a 256-row
message's own size, the size raw onnxruntime is measured at in the benches."""
TRIALS = 8
"""Chunks timed per candidate before one is chosen (a median of 8 shrugs off a chunk
slowed by another process taking the core)."""
WARM_UP_CHUNKS = 2
"""Big chunks not timed (they run in the biggest candidate's slices)."""


class SliceSizer:
    """Chooses one model's slice size from its own timed chunks."""

    def __init__(self, model: str, candidates: tuple[int, ...] = CANDIDATES) -> None:
        self._model = model
        self._seconds_per_row: dict[int, list[float]] = {rows: [] for rows in candidates}
        self._biggest = max(candidates)
        self.chosen: int | None = None
        """The slice size once chosen; None while candidates are still being tried."""
        self._big_chunks = 0  # chunks every candidate could slice
        self._trying: int | None = None  # the candidate the current chunk is sliced in

    def slice_rows(self, rows: int) -> int:
        """How many rows each call takes for a chunk of `rows` rows."""
        if self.chosen is not None:
            return self.chosen
        self._trying = None
        if rows < self._biggest:
            return max(rows, 1)  # one call, untimed
        self._big_chunks += 1
        if self._big_chunks <= WARM_UP_CHUNKS:
            return self._biggest
        self._trying = min(self._seconds_per_row, key=lambda size: len(self._seconds_per_row[size]))
        return self._trying

    def ran(self, rows: int, seconds: float) -> None:
        """The chunk of `rows` rows last asked about took `seconds` in all its slices."""
        if self._trying is None:
            return
        self._seconds_per_row[self._trying].append(seconds / rows)
        self._trying = None
        if all(len(times) >= TRIALS for times in self._seconds_per_row.values()):
            medians = {size: statistics.median(t) for size, t in self._seconds_per_row.items()}
            self.chosen = min(medians, key=medians.__getitem__)
            log.info(
                "model %s runs in slices of %d rows (microseconds per row: %s)",
                self._model,
                self.chosen,
                ", ".join(f"{size} rows {m * 1e6:.3f}" for size, m in medians.items()),
            )
