"""CLIP image and text encoders running on ncnn.

``load_model(name)`` opens an installed model (see :mod:`core.install`); the returned
:class:`ClipModel` loads each ncnn network lazily on first use and returns L2-normalised float32
embeddings. ``close()`` frees the networks.

Threads: a batch of images or texts is spread over ``threads`` worker threads, each running its
own single-threaded ncnn extractor on the shared network (ncnn releases the GIL while it computes,
and decoding with Pillow mostly does too). On a 2-core machine this gives about twice the
throughput of one extractor with two OpenMP threads, whose small per-token matrix products do not
split well. The networks are loaded single-threaded because ncnn's Gemm fixes its thread count
when it loads.

GPU: with ``vulkan=True`` and a Vulkan GPU present, the networks run on it, still in float32, and
the worker threads keep several extractors in flight on the one GPU network (measured 1.4x to
1.7x over one at a time; ``bench/vulkan.py``). Without a GPU the model falls back to the CPU and
``vulkan`` reads False.

Precision: ``precision="auto"`` (default) runs each tower in bf16 where the CPU has native bf16 dot
products and the tower met the accuracy target in ``bench/precision.py``, in float32 elsewhere;
``"fp32"`` is exactly the reference arithmetic. ``model.precision`` says what was chosen
(:mod:`core.precision`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ClipsearchError, ModelNotInstalledError
from core.precision import Precision, choose
from core.registry import ModelSpec, bf16_towers

ImageInput = str | os.PathLike[str] | Image.Image

DEFAULT_THREADS = min(4, os.cpu_count() or 1)
MASK_VALUE = -1e9  # added to attention scores of future tokens; exp() of it is exactly 0


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr (ncnn's messages about a missing Vulkan library)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def gpu_count() -> int:
    """Number of Vulkan GPUs ncnn can use (0 when no Vulkan driver is installed)."""
    import ncnn

    with _quiet_stderr():
        return int(ncnn.get_gpu_count())


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length; an all-zero row stays zero. ``[N, D] float32``."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    unit: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class ClipModel:
    """An installed CLIP model: ``encode_images`` and ``encode_texts`` on ncnn.

    Parameters
    ----------
    model_dir
        Folder of an installed model (``manifest.json`` plus the converted files).
    threads
        CPU threads to use (default: up to 4).
    vulkan
        Run on the GPU through Vulkan when one is present; falls back to the CPU otherwise.
    verify
        Check every file against the sha256 in the manifest before use (files unchanged since
        they last matched are not read again; see :func:`core.manifest.verify_manifest`).
    draft
        Let JPEGs decode at a reduced scale (never below twice the input size on the short side).
        Faster; embeddings move slightly (see ``bench/RESULTS.md``). Off gives exactly
        open_clip's preprocessing.
    precision
        ``"auto"`` (default), ``"fp32"``, ``"bf16"`` or ``"int8"`` (see :mod:`core.precision`).
        What was chosen is in :attr:`precision`.

    Raises
    ------
    PrecisionError
        An unknown precision, or one the installed model cannot run in.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        threads: int | None = None,
        vulkan: bool = False,
        verify: bool = True,
        draft: bool = True,
        precision: str = "auto",
    ) -> None:
        from core.manifest import read_manifest, verify_manifest

        self.model_dir = Path(model_dir)
        if verify:
            manifest = verify_manifest(self.model_dir, reuse=True)
        else:
            manifest = read_manifest(self.model_dir)
        self.manifest: dict[str, Any] = manifest
        self.spec = ModelSpec.from_dict(manifest["name"], manifest["spec"])
        self.name: str = self.spec.name
        self.logit_scale: float = float(manifest["logit_scale"])
        bias = manifest.get("logit_bias")
        self.logit_bias: float | None = None if bias is None else float(bias)
        """The learned bias of a SigLIP model's sigmoid loss; None for CLIP models."""
        self.context_length: int = int(self.spec.architecture.text["context_length"])
        self.embed_dim: int = int(self.spec.architecture.embed_dim)
        source = manifest.get("source")
        weights = source.get("sha256") if isinstance(source, dict) else None
        self.weights: str | None = weights if isinstance(weights, str) and weights else None
        """The sha256 of the checkpoint the model was installed from (None when not recorded):
        the same name installed again from other weights gives other embeddings."""
        self.threads = max(1, int(threads or DEFAULT_THREADS))
        self.draft = draft
        self.vulkan = bool(vulkan) and gpu_count() > 0
        self.precision: Precision = choose(
            precision,
            model=self.name,
            installed=self.spec.image_precision,
            bf16_towers=bf16_towers(self.name),
            gpu=self.vulkan,
        )
        # one lock per lazily made part, so that loading the image network (seconds for a
        # full-size model, when indexing starts) never holds up a text query
        self._visual_lock = threading.Lock()
        self._text_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        # On the CPU, the image tower runs several single-threaded extractors side by side (an
        # indexing run's throughput), the text tower one extractor at a time on all the threads
        # (a query is one text, and it is what a user waits for). ncnn fixes a network's threads
        # when it loads.
        self._threads = {"visual": self.threads if self.vulkan else 1, "text": self.threads}
        self._visual: Any = None
        self._text: Any = None
        self._host: dict[str, np.ndarray] | None = None
        self._tokenizer: Callable[[Sequence[str]], np.ndarray] | None = None
        # one pool per tower: a text query must not queue behind a batch of images
        self._pools: dict[str, ThreadPoolExecutor] = {}

    # -- loading -----------------------------------------------------------------------------

    def _net(self, stem: str, threads: int, precision: str) -> Any:
        import ncnn

        net = ncnn.Net()
        net.opt.num_threads = threads
        net.opt.use_vulkan_compute = self.vulkan
        # fp16 arithmetic and storage damage CLIP's text encoder; never use them.
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_arithmetic = False
        bf16 = precision == "bf16"
        net.opt.use_bf16_storage = bf16
        net.opt.use_bf16_packed = bf16
        with _quiet_stderr():
            param_rc = net.load_param(str(self.model_dir / f"{stem}.param"))
            model_rc = net.load_model(str(self.model_dir / f"{stem}.bin"))
        if param_rc != 0 or model_rc != 0:
            raise ClipsearchError(
                f"ncnn could not load {stem}.param/{stem}.bin of model {self.name!r} "
                f"(codes {param_rc}, {model_rc}); install it again"
            )
        return net

    def _visual_net(self) -> Any:
        with self._visual_lock:
            if self._visual is None:
                self._visual = self._net("visual", self._threads["visual"], self.precision.image)
            return self._visual

    def load_image_tower(self) -> None:
        """Load the image network now rather than with the first image (seconds for a large
        model), so that an indexing run can say it is loading and time its photos without it."""
        self._visual_net()

    def _map(
        self, tower: str, fn: Callable[[Any], np.ndarray], items: Sequence[Any]
    ) -> list[np.ndarray]:
        """``fn(item)`` for every item: on the ``tower``'s worker threads when its items run side
        by side, else one after the other in the calling thread.

        Each tower has its own threads, so that texts encoded for a search while a batch of
        images is being encoded for indexing do not wait behind it; the threads are made by the
        first caller and keep its CPU priority (the indexer's lower one for images).
        """
        side_by_side = self.vulkan or self._threads[tower] == 1
        if len(items) == 1 or self.threads == 1 or not side_by_side:
            return [fn(item) for item in items]
        return list(self._executor(tower).map(fn, items))

    def _text_parts(self) -> tuple[Any, dict[str, np.ndarray]]:
        with self._text_lock:
            if self._text is None:
                self._text = self._net("text", self._threads["text"], self.precision.text)
                names = ["token_embedding", "positional_embedding"]
                if not self.spec.is_siglip:
                    names.append("text_projection")
                self._host = {
                    name: np.load(self.model_dir / f"{name}.npy", mmap_mode="r") for name in names
                }
            assert self._host is not None
            return self._text, self._host

    def _executor(self, tower: str) -> ThreadPoolExecutor:
        with self._pool_lock:
            pool = self._pools.get(tower)
            if pool is None:
                pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"clip-{tower}")
                self._pools[tower] = pool
            return pool

    def close(self) -> None:
        """Release the networks and worker threads; the model loads again if used later."""
        with self._pool_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:  # outside the other locks: its threads may be waiting for them
            pool.shutdown(wait=True)
        with self._visual_lock, self._text_lock:
            self._visual = None
            self._text = None
            self._host = None

    def __enter__(self) -> ClipModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images ------------------------------------------------------------------------------

    def preprocess(self, image: ImageInput) -> np.ndarray:
        """Load (when given a path) and preprocess one image: ``[3, S, S] float32``."""
        from core.preprocess import load_image, preprocess

        if not isinstance(image, Image.Image):
            min_side = 2 * self.spec.preprocess.size if self.draft else None
            image = load_image(image, min_side=min_side)
        return preprocess(image, self.spec.preprocess)

    def _run_visual(self, pixels: np.ndarray) -> np.ndarray:
        import ncnn

        ex = self._visual_net().create_extractor()
        ex.input("image", ncnn.Mat(np.ascontiguousarray(pixels, dtype=np.float32)).clone())
        rc, out = ex.extract("embedding")
        if rc != 0:
            raise ClipsearchError(f"ncnn failed to encode an image (code {rc})")
        return np.array(out, dtype=np.float32).reshape(-1)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed preprocessed images ``[N, 3, S, S] float32`` -> ``[N, D] float32``, normalised."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim == 3:
            pixels = pixels[None]
        size = self.spec.preprocess.size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise ValueError(f"expected pixels of shape [N, 3, {size}, {size}], got {pixels.shape}")
        if len(pixels) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        return l2_normalize(np.stack(self._map("visual", self._run_visual, list(pixels))))

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        on_error: Callable[[int, Exception], None] | None = None,
    ) -> np.ndarray:
        """Embed images (paths or PIL images) -> ``[N, D] float32``, L2-normalised.

        Decoding, preprocessing and the ncnn forward pass of each image run together in the worker
        threads. An image that cannot be read raises its :class:`ImageDecodeError`, unless
        ``on_error(index, error)`` is given: then that row is all zeros and the run goes on.
        """
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        images = list(images)
        if not images:
            return np.zeros((0, self.embed_dim), np.float32)

        def one(item: tuple[int, ImageInput]) -> np.ndarray:
            index, image = item
            try:
                return self._run_visual(self.preprocess(image))
            except ClipsearchError as error:
                if on_error is None:
                    raise
                on_error(index, error)
                return np.zeros(self.embed_dim, np.float32)

        return l2_normalize(np.stack(self._map("visual", one, list(enumerate(images)))))

    # -- texts -------------------------------------------------------------------------------

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Embed token ids ``[N, L] int32`` (``L`` = ``context_length``) -> ``[N, D] float32``,
        L2-normalised."""
        import ncnn

        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            tokens = tokens[None]
        net, host = self._text_parts()
        embedding, positional = host["token_embedding"], host["positional_embedding"]
        if tokens.shape[1] != positional.shape[0]:
            raise ValueError(f"expected [N, {positional.shape[0]}] token ids, got {tokens.shape}")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= embedding.shape[0]):
            raise ValueError(f"token ids must lie in [0, {embedding.shape[0]})")
        if self.spec.is_siglip:
            return self._encode_tokens_whole(net, embedding, positional, tokens)

        # A causal tower never lets the end-of-text token see the padding after it, so only the
        # tokens up to it run; a non-causal one (MobileCLIP2) runs all of them, padding included.
        causal = bool(self.spec.architecture.text.get("causal", True))

        def one(ids: np.ndarray) -> np.ndarray:
            end = int(np.argmax(ids))  # the end-of-text token has the largest id
            length = end + 1 if causal else len(ids)
            x = np.asarray(embedding[ids[:length]], dtype=np.float32) + positional[:length]
            ex = net.create_extractor()
            ex.input("x", ncnn.Mat(np.ascontiguousarray(x)).clone())
            if causal:
                mask = np.triu(np.full((length, length), MASK_VALUE, np.float32), 1)
                ex.input("mask", ncnn.Mat(mask).clone())
            rc, out = ex.extract("tokens")
            if rc != 0:
                raise ClipsearchError(f"ncnn failed to encode a text (code {rc})")
            # a copy of the one row, not a view that would keep every position's output alive
            token: np.ndarray = np.array(out, dtype=np.float32).reshape(length, -1)[end].copy()
            return token

        rows = self._map("text", one, list(tokens))
        projected = np.stack(rows) @ np.asarray(host["text_projection"], dtype=np.float32)
        return l2_normalize(projected)

    def _encode_tokens_whole(
        self, net: Any, embedding: np.ndarray, positional: np.ndarray, tokens: np.ndarray
    ) -> np.ndarray:
        """SigLIP's text tower: every position, padding included, attends to every other one, so
        the whole context runs; the network pools the last position and projects it."""
        import ncnn

        def one(ids: np.ndarray) -> np.ndarray:
            x = np.asarray(embedding[ids], dtype=np.float32) + positional
            ex = net.create_extractor()
            ex.input("x", ncnn.Mat(np.ascontiguousarray(x)).clone())
            rc, out = ex.extract("embedding")
            if rc != 0:
                raise ClipsearchError(f"ncnn failed to encode a text (code {rc})")
            return np.array(out, dtype=np.float32).reshape(-1)

        return l2_normalize(np.stack(self._map("text", one, list(tokens))))

    def tokenize(self, texts: str | Sequence[str]) -> np.ndarray:
        """Token ids of ``texts`` as this model reads them: ``[N, context_length] int32``.

        CLIP models use CLIP's byte-level BPE (:func:`core.tokenize`); a model with its own
        tokenizer files (SigLIP 2's Gemma vocabulary) uses them (:mod:`core.hf_tokenizer`).
        """
        tokenizer = self._tokenizer
        if tokenizer is None:
            with self._text_lock:
                if self._tokenizer is None:
                    self._tokenizer = self._make_tokenizer()
                tokenizer = self._tokenizer
        if isinstance(texts, str):
            texts = [texts]
        return tokenizer(list(texts))

    def _make_tokenizer(self) -> Callable[[Sequence[str]], np.ndarray]:
        kind = self.spec.tokenizer.get("kind", "clip")
        if kind == "hf":
            from core.hf_tokenizer import HFTokenizer

            clean = self.spec.tokenizer.get("clean", "whitespace")
            return HFTokenizer(self.model_dir, self.context_length, clean)
        if kind != "clip":
            raise ClipsearchError(f"model {self.name!r} asks for an unknown tokenizer {kind!r}")
        from core.tokenizer import tokenize

        length = self.context_length
        return lambda texts: tokenize(texts, context_length=length)

    def encode_texts(self, texts: str | Sequence[str]) -> np.ndarray:
        """Embed texts -> ``[N, D] float32``, L2-normalised."""
        tokens = self.tokenize(texts)
        if len(tokens) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        return self.encode_tokens(tokens)


def default_model() -> str:
    """The model to use when none is named (no option, no setting, a library not indexed yet).

    The registry's default model when it is installed; else the one model installed, when there
    is exactly one (say, installed from a checkpoint under a name of its own); else the
    registry's default, whose error when it is loaded says how to install it.
    """
    from core.paths import models_dir
    from core.registry import default_model_name

    default = default_model_name()
    root = models_dir()
    if (root / default / "manifest.json").is_file():
        return default
    installed: list[str] = []
    try:
        for entry in root.iterdir():
            if not entry.name.startswith(".") and (entry / "manifest.json").is_file():
                installed.append(entry.name)
                if len(installed) > 1:
                    break
    except OSError:  # no models folder yet, or one that cannot be read
        return default
    return installed[0] if len(installed) == 1 else default


def load_model(
    name: str | None = None,
    *,
    threads: int | None = None,
    vulkan: bool = False,
    verify: bool = True,
    draft: bool = True,
    precision: str = "auto",
) -> ClipModel:
    """Open an installed model by name (default: :func:`default_model`).

    ``precision`` is ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"`` (:mod:`core.precision`);
    ``model.precision`` says what each tower runs in.

    Raises
    ------
    ModelNotInstalledError
        The model is not installed (the message gives the install command), or ``name`` is a
        path rather than a model name: models are only ever loaded from the models folder.
    ManifestError
        A file of the model does not match the hash recorded at install time.
    PrecisionError
        An unknown precision, or one the installed model cannot run in (int8 without an int8
        install).
    """
    from core.paths import is_model_name, models_dir

    name = name or default_model()
    if not is_model_name(name):
        raise ModelNotInstalledError(
            f"{name!r} is not a model name; give a model of the registry or an installed one "
            "(clipsearch-tui model list shows them)"
        )
    model_dir = models_dir() / name
    if not (model_dir / "manifest.json").is_file():
        raise ModelNotInstalledError(
            f"model {name!r} is not installed; install it with: clipsearch-tui model install {name}"
            f" (or, offline: clipsearch-tui model install {name} --from CHECKPOINT)"
        )
    return ClipModel(
        model_dir, threads=threads, vulkan=vulkan, verify=verify, draft=draft, precision=precision
    )
