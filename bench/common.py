"""What the benchmark scripts share: the CPU, its section of RESULTS.md, timing, ONNX export."""

from __future__ import annotations

import atexit
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name, from ``/proc/cpuinfo`` where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector-instruction flags of note (AVX-512, AMX, AVX-VNNI), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")))
    except OSError:
        pass
    return []


def write_section(heading: str, lines: list[str]) -> None:
    """Replace the section ``heading`` (e.g. ``"## Search"``) of RESULTS.md, or append it.

    ``lines`` is the body without the heading; other sections are left as they are.
    """
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    section = "\n".join([heading, "", *lines]).rstrip("\n") + "\n"
    start = text.find(f"\n{heading}\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        rest = "\n" + text[end:].lstrip("\n") if end >= 0 else ""
        text = text[:start].rstrip("\n") + "\n\n" + section + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


def best_of(action: Callable[[], object], runs: int, *, warm_up: bool = False) -> float:
    """The shortest wall time of ``runs`` calls of ``action``, in seconds (after one more call
    that is not timed, with ``warm_up``)."""
    if warm_up:
        action()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def export_image_tower(reference: Any, path: Path, size: int) -> None:
    """Export an open_clip model's image tower to ONNX at ``path``, with a dynamic batch axis.

    PyTorch's fused attention path (taken in eval mode, and under ``no_grad``) has no ONNX export;
    it is switched off for the export (the graph is the same) and put back as it was.
    """
    import torch

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.onnx.export(
            reference.visual,
            (torch.zeros(1, 3, size, size),),
            str(path),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class ParamLayer(NamedTuple):
    """One layer of an ncnn ``.param`` text."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str]
    """The layer's ``key=value`` parameters, keys as integers, values as written."""


def param_layers(param_text: str) -> list[ParamLayer]:
    """Every layer of an ncnn ``.param`` text, in order."""
    layers = []
    for line in param_text.splitlines()[2:]:
        fields = line.split()
        if not fields:
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        params: dict[int, str] = {}
        for field in fields[4 + n_in + n_out :]:
            key, _, value = field.partition("=")
            params[int(key)] = value
        ends = 4 + n_in
        layers.append(
            ParamLayer(fields[0], fields[1], fields[4:ends], fields[ends : ends + n_out], params)
        )
    return layers


def reference_tokens(spec: Any, folder: Path, texts: list[str]) -> Any:
    """Token ids as open_clip makes them for the model of ``spec``: CLIP's tokenizer, or for a
    SigLIP model its ``HFTokenizer`` over the tokenizer files in ``folder`` (the hub repository
    the model was installed from)."""
    import open_clip

    if spec.is_siglip:
        from tests.reference import openclip_tokenizer

        return openclip_tokenizer(folder, int(spec.architecture.text["context_length"]))(texts)
    return open_clip.tokenize(texts)


def scratch_folder(prefix: str, given: Path | None = None) -> Path:
    """The work folder of a bench script: ``given`` (made when missing, and kept), or a new
    temporary folder that is removed when the script exits, however it exits short of being
    killed (the scripts install models of several gigabytes into it)."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        return given
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)
