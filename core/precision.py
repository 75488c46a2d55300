"""Which arithmetic each tower of a model runs in: float32, bf16 or int8.

``precision`` is what the caller asks for (``load_model(name, precision=...)``, ``index
--precision``, the ``precision`` setting):

``fp32``
    Exactly the reference arithmetic (what the parity tests check).
``bf16``
    ncnn's bf16 storage (``opt.use_bf16_storage``): weights and activations are stored as bfloat16
    and the matrix products accumulate in float32. Fast on CPUs with native bf16 dot products
    (x86 AVX-512 BF16 or AMX-BF16: AMD Zen 4 and later, Intel Sapphire Rapids and later; Arm
    v8.6 BF16); elsewhere ncnn emulates it, no faster than float32, and a note says so.
``int8``
    The image tower's matrix products on 8-bit weights; only for a model installed with
    ``model install --precision int8``, whose image tower holds no float32 weights. The text
    tower stays in float32.
``auto``
    int8 for the image tower of an int8 install; otherwise bf16 for a tower only where the CPU
    has native bf16 dot products *and* the tower's bf16 embeddings met the target in
    ``bench/precision.py`` (``models/measured.json``: cosine to open_clip at least 0.9995 and the
    same top-10 set for at least 95 % of queries); float32 everywhere else.

:func:`choose` decides; :func:`native_bf16` reads the CPU's flags.
"""

from __future__ import annotations

import logging
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import ClipsearchError

PRECISIONS = ("auto", "fp32", "bf16", "int8")
"""Values a caller may ask for."""

TOWERS = ("image", "text")

X86_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ARM_BF16_FLAGS = frozenset({"bf16"})

CPUINFO = Path("/proc/cpuinfo")

log = logging.getLogger(__name__)


class PrecisionError(ClipsearchError):
    """The precision asked for is unknown, or the installed model cannot run in it."""


@dataclass(frozen=True)
class Precision:
    """What each tower runs in, and a note for the user when the choice deserves one.

    ``image`` and ``text`` are each ``"fp32"``, ``"bf16"`` or ``"int8"``.
    """

    image: str
    text: str
    note: str | None = None

    def __str__(self) -> str:
        """``"bf16"`` when both towers agree, else ``"image int8, text fp32"``."""
        if self.image == self.text:
            return self.image
        return f"image {self.image}, text {self.text}"

    def tower(self, name: str) -> str:
        """The precision of tower ``name`` (``"image"`` or ``"text"``)."""
        if name not in TOWERS:
            raise ValueError(f"no tower {name!r}; towers are {', '.join(TOWERS)}")
        return self.image if name == "image" else self.text


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in ``/proc/cpuinfo`` text.

    x86 lists them on a ``flags`` line, Arm on a ``Features`` line.
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def _cpuinfo_text() -> str:
    """The text of ``/proc/cpuinfo`` ("" where there is none: macOS, Windows)."""
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _darwin_bf16() -> bool:
    """Whether macOS reports the Arm BF16 extension (Apple M2 and later)."""
    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip() == "1"


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has native bf16 dot products.

    Parameters
    ----------
    cpuinfo
        ``/proc/cpuinfo`` text to judge; default: this machine's (on macOS, ``sysctl`` is asked
        instead; elsewhere without ``/proc/cpuinfo`` the answer is False).

    Returns
    -------
    bool
        True for x86 with ``avx512_bf16`` or ``amx_bf16``, or Arm with ``bf16``.
    """
    if cpuinfo is None:
        cpuinfo = _cpuinfo_text()
        if not cpuinfo and platform.system() == "Darwin":
            return _darwin_bf16()
    flags = cpu_flags(cpuinfo)
    return bool(flags & X86_BF16_FLAGS or flags & ARM_BF16_FLAGS)


def check(requested: str) -> str:
    """``requested`` if it is one of :data:`PRECISIONS`; else :class:`PrecisionError`."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    return requested


def choose(
    requested: str,
    *,
    model: str,
    installed: str,
    bf16_towers: frozenset[str] | set[str] = frozenset(),
    native: bool | None = None,
    gpu: bool = False,
) -> Precision:
    """Decide what each tower runs in.

    Parameters
    ----------
    requested
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"``.
    model
        The model's name, for messages.
    installed
        How the image tower was installed: ``"fp32"`` or ``"int8"``.
    bf16_towers
        Towers whose bf16 embeddings met the target (``models/measured.json``); ``auto`` picks
        bf16 only for these.
    native
        Whether the CPU has native bf16 dot products; default: :func:`native_bf16`.
    gpu
        The networks run on a Vulkan GPU, always in float32 (int8 layers excepted).

    Raises
    ------
    PrecisionError
        An unknown value; ``int8`` for a model installed without it; ``fp32`` or ``bf16`` for a
        model whose image tower was installed as int8.
    """
    check(requested)
    reinstall = f"clipsearch-tui model install {model}"
    if requested == "int8" and installed != "int8":
        raise PrecisionError(
            f"model {model!r} was installed without int8; for int8 install it again with: "
            f"{reinstall} --precision int8"
        )
    if requested in ("fp32", "bf16") and installed == "int8":
        raise PrecisionError(
            f"model {model!r} was installed with an int8 image tower, which cannot run in "
            f"{requested}; use --precision int8 or auto, or install it again with: "
            f"{reinstall} --precision fp32"
        )
    image_base = "int8" if installed == "int8" else "fp32"
    if gpu:
        note = None
        if requested == "bf16":
            note = "bf16 applies to the CPU; the Vulkan GPU encodes in float32"
        return Precision(image_base, "fp32", note)
    if requested in ("fp32", "int8"):
        return Precision(image_base, "fp32")
    if native is None:
        native = native_bf16()
    if requested == "bf16":
        note = None
        if not native:
            note = (
                "this CPU has no native bf16 dot products (AVX-512 BF16, AMX or Arm BF16): "
                "bf16 is emulated, no faster than float32"
            )
        return Precision("bf16", "bf16", note)
    # auto
    image = image_base
    text = "fp32"
    if native:
        if image == "fp32" and "image" in bf16_towers:
            image = "bf16"
        if "text" in bf16_towers:
            text = "bf16"
    return Precision(image, text)
