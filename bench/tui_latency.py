"""Time how the terminal app responds while indexing runs: key presses, and Enter to first results.

Builds (once, in ``--work``) a library of ``--photos`` indexed photos with synthetic embeddings,
and a folder of real photos that are not indexed yet. Then it drives the real app headless with
Textual's Pilot, starts indexing those photos in the background, and while the indexer encodes:

- presses Down and Up in the results ``--keys`` times (in the list, or with ``--view grid`` in the
  grid, where they move by a row of cells) and types into the query box, timing
  each key from the moment the driver hands it to the app until its handler has run, and until
  the next frame is drawn;
- runs ``--queries`` text searches, timing from Enter until the first page of results is mounted
  and until that frame is drawn (the search worker's own time is shown beside it).

Keys are sent the way the terminal driver sends them, 0.1 s apart; a frame is a screen update
the app composes (the headless driver then discards it instead of writing it to a terminal).

The model is loaded before anything is timed. By default it is the registry's default
architecture with random weights (the text encoder costs the same as with real weights); ``--model
tiny`` uses a tiny random model instead.

Usage::

    python bench/tui_latency.py [--photos 10000] [--pending 400] [--model default|tiny]
                                [--work DIR] [--keys 60] [--queries 20] [--images halfcell]
                                [--idle] [--view list|grid]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED_SOURCE = ROOT.parent / "shared" / "photos" / "exif-samples" / "jpg"
DEFAULT_SOURCE = SHARED_SOURCE if SHARED_SOURCE.is_dir() else ROOT / "tests" / "photos" / "jpg"
"""The full sample collection beside the checkout when present, else the photos of the tests."""
QUERIES = (
    "a dog on the beach", "sunset over the sea", "birthday cake", "snowy mountains",
    "a red car", "people at a wedding", "city at night", "a cat on a sofa",
    "beach + sunset - people", "2:forest + 0.5:\"morning fog\"", "a plate of food",
    "children playing football", "an old building", "flowers in a garden", "a boat",
    "fireworks", "a train", "a bird in the sky", "a selfie", "a screenshot",
)  # fmt: skip


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _install_model(kind: str) -> str:
    from core.encoder import load_model
    from core.errors import ModelNotInstalledError
    from core.install import install_model
    from core.registry import default_model_name, get_spec

    name = default_model_name() if kind == "default" else "bench-tiny"
    try:
        load_model(name, verify=False).close()
        return name
    except ModelNotInstalledError:
        pass
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    _log(f"building a random {name} checkpoint and installing it (once)...")
    architecture = get_spec(name).architecture if kind == "default" else TINY_VIT
    home = Path(os.environ["CLIPSEARCH_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(make_reference(architecture, seed=0), home / "ckpt.safetensors")
    if kind == "default":
        install_model(name, checkpoint)
    else:
        install_model(None, checkpoint, as_name=name)
    checkpoint.unlink()
    return name


def _synthetic_library(work: Path, count: int, model_name: str, dim: int) -> Path:
    """``count`` small files indexed with random unit vectors; returns their folder."""
    from core.library import Library
    from core.scan import scan

    folder = work / "synthetic"
    with Library.open() as library:
        if library.stats()["indexed"] >= count:
            return folder
        _log(f"making {count} synthetic photos and their embeddings (once)...")
        rng = np.random.default_rng(0)
        folder.mkdir(parents=True, exist_ok=True)
        start = 946_684_800  # 2000-01-01
        for i in range(count):
            path = folder / f"{i // 500:03d}" / f"IMG_{i:05d}.jpg"
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                colour = tuple(int(v) for v in rng.integers(0, 255, 3))
                Image.new("RGB", (32, 24), colour).save(path, quality=70)
                moment = start + int(rng.integers(0, 25 * 365 * 86400))
                os.utime(path, (moment, moment))
        library.add_roots([folder])
        thumb_name = "synthetic-thumbnail.jpg"
        library.thumbnail_dir.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (256, 192), (90, 140, 200)).save(library.thumbnail_dir / thumb_name)
        with library.indexing_lock():
            library.sync(scan([folder]), roots=[folder])
            library.use_model(model_name, dim)
            pending = library.pending(roots=[folder])
            for begin in range(0, len(pending), 1000):
                chunk = pending[begin : begin + 1000]
                vectors = rng.standard_normal((len(chunk), dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                library.save_batch(
                    model_name, [p.id for p in chunk], vectors, [thumb_name] * len(chunk)
                )
    return folder


def _pending_photos(work: Path, source: Path, count: int) -> Path:
    """Fresh copies of real photos, each made unique so that none is recognised as indexed."""
    folder = work / "pending"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sources = [p for p in sorted(source.rglob("*.jpg")) if 5_000 < p.stat().st_size < 3_000_000]
    for i in range(count):
        original = sources[i % len(sources)]
        target = folder / f"{i:04d}-{original.name}"
        target.write_bytes(original.read_bytes() + os.urandom(16))
    return folder


def _summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


class _Clock:
    """Timestamps of the app's work: handlers that ran, results mounted, frames produced."""

    def __init__(self) -> None:
        self.handled: list[float] = []
        self.shown: list[float] = []
        self.frames: list[float] = []

    async def frame_after(self, moment: float, timeout: float = 10.0) -> float:
        """The time of the first frame produced after ``moment``."""
        deadline = time.perf_counter() + timeout
        while True:
            later = [t for t in self.frames[-5:] if t > moment]
            if later:
                return later[0]
            if time.perf_counter() > deadline:
                raise SystemExit("no frame was drawn in time")
            await asyncio.sleep(0.0005)


async def _measure(args: argparse.Namespace, roots: list[Path], model_name: str) -> dict[str, Any]:
    from textual import events
    from textual.widgets import Input

    from tui.app import make_app
    from tui.config import TuiConfig
    from tui.widgets.grid import ResultsGrid
    from tui.widgets.results import PagedResults, ResultsList
    from tui.widgets.timeline import TimelineTree

    config = TuiConfig(model=model_name, batch_size=args.batch_size, view=args.view)
    app = make_app(roots, images=args.images, config=config)
    clock = _Clock()
    view: type[PagedResults] = ResultsGrid if args.view == "grid" else ResultsList
    move = "action_row" if args.view == "grid" else "action_cursor"  # what Down and Up run
    real_show = PagedResults.show
    real_cursor = getattr(view, move)
    real_display = type(app)._display

    async def timed_show(self: PagedResults, hits: list[Any], cursor: int = 0) -> None:
        await real_show(self, hits, cursor)
        clock.shown.append(time.perf_counter())

    def timed_cursor(self: PagedResults, delta: int) -> None:
        real_cursor(self, delta)
        clock.handled.append(time.perf_counter())

    def timed_display(self: Any, screen: Any, renderable: Any) -> None:
        real_display(self, screen, renderable)
        if renderable is not None:
            clock.frames.append(time.perf_counter())

    PagedResults.show = timed_show  # type: ignore[method-assign]
    setattr(view, move, timed_cursor)
    type(app)._display = timed_display  # type: ignore[method-assign]

    def send(key: str, character: str | None = None) -> float:
        """Send a key as the terminal driver would; returns when it was sent."""
        event = events.Key(key, character)
        event.set_sender(app)
        started = time.perf_counter()
        app._driver.send_message(event)  # type: ignore[union-attr]
        return started

    report: dict[str, Any] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 600
        while app.model is None or app.indexing or app.jobs_waiting:
            if time.monotonic() > deadline:
                raise SystemExit("the app did not open the library in 10 minutes")
            await asyncio.sleep(0.1)
        tree = app.query_one(TimelineTree)
        all_bucket = tree.bucket("all")
        indexed_before = all_bucket.indexed if all_bucket else 0
        if args.idle:
            _log("library open; measuring searches with no indexing running")
        else:
            _log("library open; starting to index the pending photos in the background")
            tree.focus()
            tree.move_cursor(tree._bucket_nodes["all"])
            await pilot.press("i")
            while app._panel()._last is None or app._panel()._last.current in (
                None, "scanning", "reading", "reading dates"
            ):  # fmt: skip
                await asyncio.sleep(0.05)
            if not app.indexing:
                raise SystemExit("indexing ended before the measurements; give more --pending")
            _log("indexing runs; measuring searches")

        search_times: list[float] = []
        mounted_times: list[float] = []
        worker_times: list[float] = []
        box = app.query_one("#query", Input)
        box.focus()
        for i in range(args.queries):
            box.value = QUERIES[i % len(QUERIES)]
            await asyncio.sleep(0.3)
            before = len(clock.shown)
            started = send("enter")
            while len(clock.shown) == before:
                await asyncio.sleep(0.0005)
            mounted_times.append(clock.shown[-1] - started)
            search_times.append(await clock.frame_after(clock.shown[-1]) - started)
            worker_times.append(app.last_search_s or 0.0)
        results = app.query_one(view)
        report["hits_per_search"] = len(results.hits)

        _log("measuring key presses")
        results.focus()
        await asyncio.sleep(0.3)
        key_times: list[float] = []
        handler_times: list[float] = []
        for i in range(args.keys):
            key = "down" if (i // 10) % 2 == 0 else "up"
            before = len(clock.handled)
            started = send(key)
            while len(clock.handled) == before:
                await asyncio.sleep(0.0005)
            handler_times.append(clock.handled[-1] - started)
            key_times.append(await clock.frame_after(clock.handled[-1]) - started)
            await asyncio.sleep(0.1)
        box.focus()
        box.value = ""
        await asyncio.sleep(0.3)
        typing_times: list[float] = []
        for char in "a red bicycle in the snow":
            before = box.value
            started = send(char, char)
            while box.value == before:
                await asyncio.sleep(0.0005)
            typed = time.perf_counter()
            typing_times.append(await clock.frame_after(typed) - started)
            await asyncio.sleep(0.1)

        still_indexing = app.indexing
        progress = app._panel()._last
        all_bucket = tree.bucket("all")
        indexed_after = all_bucket.indexed if all_bucket else 0
        report.update(
            {
                "enter_to_first_results_drawn": _summary(search_times),
                "enter_to_first_results_mounted": _summary(mounted_times),
                "search_worker": _summary(worker_times),
                f"key_to_frame_results_{args.view}": _summary(key_times),
                f"key_to_handler_results_{args.view}": _summary(handler_times),
                "key_to_frame_typing": _summary(typing_times),
                "indexing_still_running_at_the_end": still_indexing,
                "indexing_progress": (
                    f"{progress.done}/{progress.total} at {progress.rate_per_s:.1f} photos/s"
                    if progress
                    else None
                ),
                "indexed_in_library_before_after": [indexed_before, indexed_after],
            }
        )
        app.action_stop_indexing()
        while app.indexing:
            await asyncio.sleep(0.1)
    PagedResults.show = real_show  # type: ignore[method-assign]
    setattr(view, move, real_cursor)
    type(app)._display = real_display  # type: ignore[method-assign]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000, help="indexed photos in the library")
    parser.add_argument("--pending", type=int, default=400, help="photos indexed while timing")
    parser.add_argument("--model", choices=("default", "tiny"), default="default")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clipsearch-tui-bench"))
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--keys", type=int, default=60)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--idle", action="store_true", help="measure with no indexing running")
    parser.add_argument("--view", choices=("list", "grid"), default="list", help="results view")
    parser.add_argument(
        "--images", default="halfcell", choices=("none", "halfcell", "kitty", "sixel")
    )
    args = parser.parse_args()
    random.seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["CLIPSEARCH_HOME"] = str(args.work / "home")
    from core.encoder import load_model

    model_name = _install_model(args.model)
    dim = load_model(model_name, verify=False).embed_dim
    synthetic = _synthetic_library(args.work, args.photos, model_name, dim)
    pending = _pending_photos(args.work, args.source, args.pending)
    report = asyncio.run(_measure(args, [synthetic, pending], model_name))
    report = {
        "library_photos": args.photos,
        "model": model_name,
        "images": args.images,
        "view": args.view,
        "indexing_during_measurements": not args.idle,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        **report,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
