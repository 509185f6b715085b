"""ONNX models on onnxruntime (CPU, or CUDA when a deployment asks for GPUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from engine import codecs
from engine.definition import TensorSpec
from engine.errors import InputMismatch, ModelLoadError, StepFailed
from engine.runtimes.base import Runtime, RuntimeOptions, Signature

# onnxruntime's tensor type strings -> numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "object",
}


RUN_ROWS = 1024
"""The most rows onnxruntime runs at once on a CPU; a bigger batch runs in slices of this
many, back to back. Past about this many rows a model's activations outgrow the CPU's
caches and its cost per row grows (the bench's heavy MLP, one thread: ~103k rows/s in
batches of 256 or 1024 rows, ~88k at 2048, ~81k at 4096), while a worker's micro-batch
costs less per row the bigger it is (streams.settings.WorkerSettings.max_batch_rows).
GPUs are fed whole batches."""


def _specs(args: list[ort.NodeArg]) -> list[TensorSpec]:
    return [
        TensorSpec(name=a.name, dtype=_ORT_TYPES.get(a.type, "unknown"), shape=list(a.shape))
        for a in args
    ]


def _session(path: Path, options: RuntimeOptions) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if options.threads:
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if options.device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelLoadError(
                "the deployment asks for GPUs but onnxruntime has no CUDA execution provider here "
                f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                "on a machine with an NVIDIA GPU, or deploy with gpus(0)"
            )
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelLoadError(f"onnxruntime cannot load {path.name}: {exc}") from exc


class OnnxRuntime(Runtime):
    """An onnxruntime InferenceSession over one .onnx file."""

    kind = "onnx"
    _session: ort.InferenceSession | None = None
    _on_gpu = False

    @classmethod
    def inspect(cls, path: Path) -> Signature:
        session = _session(path, RuntimeOptions(threads=1))
        return Signature(_specs(session.get_inputs()), _specs(session.get_outputs()))

    def _load(self, path: Path, options: RuntimeOptions) -> None:
        self._session = _session(path, options)
        self._on_gpu = options.device == "cuda"
        self._inputs = _specs(self._session.get_inputs())
        self._output_names = [o.name for o in self._session.get_outputs()]

    def providers(self) -> list[str]:
        assert self._session is not None, "load() first"
        return list(self._session.get_providers())

    def predict(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self._session is not None, "load() first"
        feeds = {spec.name: _feed(spec, array) for spec, array in self._match_inputs(batch)}
        try:
            if batch.num_rows <= RUN_ROWS or self._on_gpu:
                outputs = self._session.run(self._output_names, feeds)
            else:
                outputs = self._run_in_slices(feeds, batch.num_rows)
        except Exception as exc:
            raise StepFailed(self.name, f"onnxruntime: {exc}") from exc
        return codecs.batch_from_arrays(dict(zip(self._output_names, outputs, strict=True)))

    def _run_in_slices(self, feeds: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        assert self._session is not None
        parts = []
        for start in range(0, rows, RUN_ROWS):
            rows_fed = {name: array[start:start + RUN_ROWS] for name, array in feeds.items()}
            parts.append(self._session.run(self._output_names, rows_fed))
        return [np.concatenate(pieces) for pieces in zip(*parts, strict=True)]

    def _match_inputs(self, batch: pa.RecordBatch) -> list[tuple[TensorSpec, np.ndarray]]:
        """Pair each model input with a column: by name, else by the one-input conventions.

        One input and one column, or one tensor (list) column beside scalar
        fields such as a split key: that column feeds it (the guide's `tensor`
        column). One rank-2 input of width k and k scalar columns: the columns
        are stacked in order.
        """
        names = batch.schema.names
        if all(spec.name in names for spec in self._inputs):
            return [
                (spec, codecs.column_to_ndarray(batch.column(spec.name), name=spec.name))
                for spec in self._inputs
            ]
        if len(self._inputs) == 1:
            spec = self._inputs[0]
            tensors = [n for n, t in zip(names, batch.schema.types) if pa.types.is_nested(t)]
            if len(names) == 1 or (len(spec.shape) > 1 and len(tensors) == 1):
                name = names[0] if len(names) == 1 else tensors[0]
                return [(spec, codecs.column_to_ndarray(batch.column(name), name=name))]
            width = spec.shape[1] if len(spec.shape) == 2 else None
            scalar = all(not pa.types.is_nested(t) for t in batch.schema.types)
            if scalar and (width is None or width == len(names)) and len(names) > 1:
                columns = [codecs.column_to_ndarray(c, name=n) for c, n in zip(batch.columns, names)]
                return [(spec, np.column_stack(columns))]
        expected = ", ".join(f"{s.name} {s.dtype}{s.shape}" for s in self._inputs)
        raise InputMismatch(
            f"model {self.name!r} needs inputs [{expected}] but the data has columns {names}: "
            "name the columns after the model's inputs, or send one column holding the whole tensor"
        )


def _feed(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """Cast to the declared dtype and check the rank, so errors name the input."""
    rank = len(spec.shape)
    if rank and array.ndim != rank:
        raise InputMismatch(
            f"input {spec.name!r} needs rank {rank} (shape {spec.shape}) but got shape "
            f"{list(array.shape)}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
        if axis and isinstance(want, int) and want != got:
            raise InputMismatch(
                f"input {spec.name!r} needs shape {spec.shape} but got {list(array.shape)} "
                f"(dimension {axis} is {got}, must be {want})"
            )
    if spec.dtype not in ("unknown", "object") and array.dtype != spec.dtype:
        if not np.can_cast(array.dtype, spec.dtype, "same_kind"):
            raise InputMismatch(
                f"input {spec.name!r} needs {spec.dtype} values but got {array.dtype}"
            )
        array = array.astype(spec.dtype)
    return array
