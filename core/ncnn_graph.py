"""A small writer for ncnn's ``.param`` / ``.bin`` model files.

The text format (ncnn wiki, "param and model file structure")::

    7767517
    LAYER_COUNT BLOB_COUNT
    Type Name INPUT_COUNT OUTPUT_COUNT inputs... outputs... k=v k=v ...

An array parameter is written as ``-(23300 + k)=count,v1,v2,...``. The ``.bin`` file is the weights
of every layer, in layer order, in the order each layer's ``load_model`` reads them. Data that a
layer reads with ``ModelBin::load(..., 0)`` (convolution and linear weights) starts with a 4-byte
tag (``0`` for raw float32, ``0x01306B47`` for float16); data read with type ``1`` (biases, norm
parameters, ``MemoryData``) is raw float32 with no tag.

ncnn expects every blob to have a single consumer: a blob read by several layers must go through a
``Split`` layer. :meth:`Graph.write` inserts those automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

MAGIC = 7767517
FP16_TAG = 0x01306B47
INT8_TAG = 0x000D4B38

ParamValue = int | float | Sequence[int] | Sequence[float]


@dataclass
class _Weight:
    data: np.ndarray
    tagged: bool


@dataclass
class _Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, ParamValue]
    weights: list[_Weight] = field(default_factory=list)


def _stored_array(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == np.int8:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array, dtype=np.float32)


def _format_value(value: float) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.9e}"


def _format_param(key: int, value: ParamValue) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        items = ",".join(_format_value(v) for v in value)
        return f"{-23300 - key}={len(value)},{items}"
    return f"{key}={_format_value(cast(float, value))}"


class Graph:
    """Builds an ncnn network layer by layer, then writes ``.param`` and ``.bin``.

    Parameters
    ----------
    weight_storage
        ``"fp32"`` (default) or ``"fp16"``: how tagged weights (convolution, linear, attention
        projections) are stored in the ``.bin`` file. Biases and norms always stay float32.
        Weights already quantized to ``int8`` are written as such, whatever this says.
    """

    def __init__(self, weight_storage: str = "fp32") -> None:
        if weight_storage not in ("fp32", "fp16"):
            raise ValueError(f"weight_storage must be fp32 or fp16, not {weight_storage!r}")
        self.weight_storage = weight_storage
        self.quantize = False  # read by the converter: emit int8 Gemm/attention layers
        self._layers: list[_Layer] = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        base, n = name, 1
        while name in self._names:
            name = f"{base}_{n}"
            n += 1
        self._names.add(name)
        return name

    def input(self, name: str) -> str:
        """Declare an input blob called ``name``."""
        self._layers.append(_Layer("Input", self._unique(name), [], [name], {}))
        return name

    def layer(
        self,
        type_: str,
        name: str,
        inputs: Sequence[str],
        params: dict[int, ParamValue] | None = None,
        weights: Sequence[tuple[np.ndarray, bool]] = (),
    ) -> str:
        """Append a layer with one output; returns the name of its output blob.

        ``weights`` is a sequence of ``(array, tagged)`` in the order the layer loads them;
        ``tagged`` is True for data read with ``ModelBin::load(..., 0)``.
        """
        name = self._unique(name)
        outputs = [name]
        self._layers.append(
            _Layer(
                type_,
                name,
                list(inputs),
                outputs,
                dict(params or {}),
                [_Weight(_stored_array(w), t) for w, t in weights],
            )
        )
        return name

    def _with_splits(self) -> list[_Layer]:
        consumers: dict[str, list[tuple[int, int]]] = {}
        for li, layer in enumerate(self._layers):
            for ii, blob in enumerate(layer.inputs):
                consumers.setdefault(blob, []).append((li, ii))
        layers = [
            _Layer(x.type, x.name, list(x.inputs), list(x.outputs), x.params, x.weights)
            for x in self._layers
        ]
        out: list[_Layer] = []
        for layer in layers:
            out.append(layer)
            for blob in layer.outputs:
                uses = consumers.get(blob, [])
                if len(uses) <= 1:
                    continue
                split_outputs = [f"{blob}.split{i}" for i in range(len(uses))]
                out.append(
                    _Layer("Split", self._unique(f"split_{blob}"), [blob], split_outputs, {})
                )
                for (li, ii), new_blob in zip(uses, split_outputs, strict=True):
                    layers[li].inputs[ii] = new_blob
        return out

    def _weight_bytes(self, weight: _Weight) -> bytes:
        data = weight.data.ravel()
        if data.dtype == np.int8:
            raw = data.tobytes()
            raw += b"\0" * (-len(raw) % 4)
            return bytes(np.uint32(INT8_TAG).astype("<u4").tobytes()) + raw
        if not weight.tagged:
            return data.astype("<f4").tobytes()
        if self.weight_storage == "fp16":
            raw = data.astype("<f2").tobytes()
            raw += b"\0" * (-len(raw) % 4)
            return bytes(np.uint32(FP16_TAG).astype("<u4").tobytes()) + raw
        return b"\0\0\0\0" + data.astype("<f4").tobytes()

    def write(self, param_path: Path, bin_path: Path) -> None:
        """Write the network to ``param_path`` (text) and ``bin_path`` (weights)."""
        layers = self._with_splits()
        blobs = {blob for layer in layers for blob in layer.outputs}
        lines = [str(MAGIC), f"{len(layers)} {len(blobs)}"]
        for layer in layers:
            fields = [
                f"{layer.type:<24}",
                f"{layer.name:<32}",
                str(len(layer.inputs)),
                str(len(layer.outputs)),
                *layer.inputs,
                *layer.outputs,
                *(_format_param(k, v) for k, v in sorted(layer.params.items())),
            ]
            lines.append(" ".join(fields))
        Path(param_path).write_text("\n".join(lines) + "\n", encoding="ascii")
        with open(bin_path, "wb") as fh:
            for layer in layers:
                fh.writelines(self._weight_bytes(weight) for weight in layer.weights)
