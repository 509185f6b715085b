"""ONNX models on onnxruntime (CPU, or CUDA when a deployment asks for GPUs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from engine import codecs
from engine.definition import TensorSpec
from engine.errors import InputMismatch, ModelLoadError, StepFailed
from engine.runtimes._slices import SliceSizer
from engine.runtimes.base import Runtime, RuntimeOptions, Signature

# onnxruntime's tensor type strings -> numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


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
        self._on_gpu = options.device == "cuda"  # GPUs are fed whole chunks
        self._slices = SliceSizer(self.name)
        self._inputs = _specs(self._session.get_inputs())
        self._output_names = [o.name for o in self._session.get_outputs()]

    def providers(self) -> list[str]:
        assert self._session is not None, "load() first"
        return list(self._session.get_providers())

    def predict(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self._session is not None, "load() first"
        matched = self._match_inputs(batch)
        if any(isinstance(values, list) for _, _, values in matched):
            outputs = self._run_by_shape(matched, batch.num_rows)
        else:
            # No value is a list here (checked above).
            outputs = self._run(
                {
                    spec.name: _feed(spec, values)  # type: ignore[arg-type]
                    for spec, _, values in matched
                },
                batch.num_rows,
            )
        return codecs.batch_from_arrays(dict(zip(self._output_names, outputs, strict=True)))

    def _run(self, feeds: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        assert self._session is not None
        try:
            if self._on_gpu:
                return list(self._session.run(self._output_names, feeds))
            return self._run_in_slices(feeds, rows)
        except Exception as exc:
            raise StepFailed(self.name, f"onnxruntime: {exc}") from exc

    def _run_by_shape(self, matched: list[_Matched], rows: int) -> list[Any]:
        """Ragged inputs (one array per row): rows of one shape run together, never padded.

        Each output is one array again if every group's rows came out in one shape, else one
        array per row.
        """
        for spec, column, values in matched:
            if isinstance(values, list):
                _check_dynamic(self.name, spec, column, values)
        keys = [
            tuple(v[i].shape for _, _, v in matched if isinstance(v, list)) for i in range(rows)
        ]
        groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        per_row: list[list[np.ndarray]] = [[] for _ in self._output_names]
        order: list[int] = []
        for members in groups.values():
            feeds = {
                spec.name: _feed(
                    spec,
                    np.stack([values[i] for i in members])
                    if isinstance(values, list)
                    else values[members],
                )
                for spec, _, values in matched
            }
            for k, out in enumerate(self._run(feeds, len(members))):
                per_row[k].extend(out)
            order += members
        back = np.argsort(np.asarray(order), kind="stable")
        outputs: list[Any] = []
        for rows_out in per_row:
            in_order = [rows_out[i] for i in back]
            same = len({(r.shape, r.dtype) for r in in_order}) <= 1
            outputs.append(np.stack(in_order) if same and in_order else in_order)
        return outputs

    def _run_in_slices(self, feeds: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        """Run `rows` rows in slices of the size `SliceSizer` chose (or is trying)."""
        assert self._session is not None
        size = self._slices.slice_rows(rows)
        began = time.perf_counter()
        parts = [
            self._session.run(
                self._output_names,
                {name: array[start : start + size] for name, array in feeds.items()},
            )
            for start in range(0, max(rows, 1), size)  # an empty chunk: one call
        ]
        self._slices.ran(rows, time.perf_counter() - began)
        if len(parts) == 1:
            return list(parts[0])
        return [np.concatenate(pieces) for pieces in zip(*parts, strict=True)]

    def _match_inputs(self, batch: pa.RecordBatch) -> list[_Matched]:
        """Pair each model input with a column: by name, else by the one-input conventions.

        One input and one column, or one tensor (list) column beside scalar
        fields such as a split key: that column feeds it (the guide's `tensor`
        column). One rank-2 input of width k and k scalar columns: the columns
        are stacked in order. A column whose rows differ in shape comes as one array per row.
        """
        names = batch.schema.names
        if all(spec.name in names for spec in self._inputs):
            return [
                (spec, spec.name, codecs.column_values(batch.column(spec.name), name=spec.name))
                for spec in self._inputs
            ]
        if len(self._inputs) == 1:
            spec = self._inputs[0]
            tensors = [n for n, t in zip(names, batch.schema.types) if pa.types.is_nested(t)]
            if len(names) == 1 or (len(spec.shape) > 1 and len(tensors) == 1):
                name = names[0] if len(names) == 1 else tensors[0]
                return [(spec, name, codecs.column_values(batch.column(name), name=name))]
            width = spec.shape[1] if len(spec.shape) == 2 else None
            scalar = all(not pa.types.is_nested(t) for t in batch.schema.types)
            if scalar and (width is None or width == len(names)) and len(names) > 1:
                columns = [
                    codecs.column_to_ndarray(c, name=n) for c, n in zip(batch.columns, names)
                ]
                return [(spec, ", ".join(names), np.column_stack(columns))]
        expected = ", ".join(f"{s.name} {s.dtype}{s.shape}" for s in self._inputs)
        raise InputMismatch(
            f"model {self.name!r} needs inputs [{expected}] but the data has columns {names}: "
            "name the columns after the model's inputs, or send one column holding the whole tensor"
        )


_Matched = tuple[TensorSpec, str, "np.ndarray | list[np.ndarray]"]
"""A model input, the column feeding it, and its values (one array per row if ragged)."""


def _check_dynamic(model: str, spec: TensorSpec, column: str, rows: list[np.ndarray]) -> None:
    """Rows of differing shapes may only differ along the input's dynamic axes."""
    for axis in range(1, len(spec.shape)):
        sizes = {row.shape[axis - 1] for row in rows if row.ndim >= axis}
        want = spec.shape[axis]
        if len(sizes) > 1 and isinstance(want, int):
            raise InputMismatch(
                f"the codec refused column {column!r} for input {spec.name!r} of model "
                f"{model!r}: its rows have sizes {min(sizes)} to {max(sizes)} on axis {axis}, "
                f"which the model fixes at {want} (shape {spec.shape}); weir never pads: make "
                "the rows that size in a pre-processing step"
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
