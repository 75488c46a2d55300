"""End to end against the real rclip: index the same photos from an empty index, whole processes.

rclip (https://github.com/yurijmikhalevich/rclip) indexes with ViT-B-32-256 (DataComp) exported
to ONNX and run by ONNX Runtime. Given its model files in its data folder it runs offline::

    $RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/visual.onnx    image tower, input "input"
    $RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/textual.onnx   text tower, input "input"
    $RCLIP_DATADIR/tokenizer/bpe_simple_vocab_16e6.txt.gz
    $RCLIP_DATADIR/db.sqlite3                                     its index

This script gives both programs the same random weights (open_clip's ViT-B-32-256 with a fixed
seed, attention sharpened as ``tests/reference.py`` does, so that photos get different vectors):
it exports them to ONNX the way rclip's ``scripts/convert_model.py`` does (``model.visual`` and
``model.encode_text`` wrapped, inputs ``input`` and outputs ``output`` with a dynamic batch axis,
``torch.onnx.export`` with opset 18 and the TorchScript exporter, PyTorch's fused attention
path off; the vocabulary is open_clip's), and installs the same checkpoint for us with
``clipsearch-tui model install --from``. Other models of ours (``--models``, e.g.
MobileCLIP2-S0) get their own random weights; rclip always runs ViT-B-32-256.

Each round times, as separate processes from an empty index, on the same album:

- rclip: ``rclip -f -t 1 "a photo"`` run in the album (rclip indexes the folder, then answers
  the query; it cannot index without one), with a fresh ``RCLIP_DATADIR``;
- ours: ``clipsearch-tui index ALBUM`` and then ``clipsearch-tui search "a photo" --top 1``,
  with a fresh ``CLIPSEARCH_HOME`` (the index-only time is reported too).

The engines alternate which goes first from round to round. Both use their default threads
(rclip: ONNX Runtime on every core, a loader thread per core; ours: an encoder thread per core
up to 4, and its decode pool). Reported: photos per second over the whole processes (best round
and every round) and the ratio to rclip. Before timing, rclip's stored vectors are compared with
ours on the same photos (float32, no draft decoding), which shows that both ran the same weights.
Both programs run from byte-compiled modules: rclip's were compiled by pip when it was
installed, ours are compiled into the work folder before the rounds.

The album: ``--copies`` distinct copies (a few bytes appended after the JPEG end marker) of the
JPEGs of at least one megapixel in ``--source`` (default ``../shared/photos/exif-samples``
beside the repository), or, where there are none, of the JPEGs in ``tests/photos`` (small
photos); or ``--album DIR`` as it is.

Setup, once (rclip is not a dependency of this project; any folder will do)::

    python3 -m venv /tmp/rclip-bench/venv
    /tmp/rclip-bench/venv/bin/pip install rclip==3.3.0

Run (needs the test extra: torch, open_clip_torch, onnx)::

    python bench/rclip_e2e.py --rclip /tmp/rclip-bench/venv/bin/rclip [--rounds 3]
        [--copies 6] [--models ViT-B-32-256-datacomp MobileCLIP2-S0] [--precision auto]
        [--workdir DIR] [--no-write]

Results go to the "## End to end against rclip" section of bench/RESULTS.md, and our photos per
second to ``models/measured.json``, where ``model list`` and the first-run dialog read them.

``--queries N`` times what a scripted query costs instead: the album is indexed once by each
program, then each round runs one query as a whole process, rclip's ``rclip -n -f -t 1 "a
photo"`` (``-n``: no index update) and our ``search "a photo" --top 1``, the order alternating;
medians and their ratio go to the "## A query from the command line against rclip" section.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_flags, cpu_model, scratch_folder, write_section  # noqa: E402
from bench.indexing import large_jpegs, make_album  # noqa: E402
from tests.samples import SAMPLES, SHARED_SAMPLES  # noqa: E402

RCLIP_MODEL = "ViT-B-32-256-datacomp"
RCLIP_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
RCLIP_VOCAB = Path("tokenizer") / "bpe_simple_vocab_16e6.txt.gz"
QUERY = "a photo"
MEASURED = ROOT / "models" / "measured.json"
ATTENTION = 4.0


def album_sources(source: Path) -> tuple[list[Path], str]:
    """The photos to copy into the album, and a few words saying which they are."""
    if source.is_dir():
        found = [path for path, _ in large_jpegs(source)]
        if found:
            return found, f"JPEGs of at least 1 megapixel in {source.name}"
    found = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return found, "JPEGs of tests/photos (scaled down to 320 pixels)"


def reference_model(name: str, pixels_from: list[Path]):
    """Random open_clip weights for ``name``, made discriminative on a few of the photos as the
    parity tests do (MobileCLIP2: BatchNorm and layer scales set apart from their initial values,
    statistics measured on the photos)."""
    import torch

    from core.registry import get_spec

    spec = get_spec(name)
    pre = spec.preprocess
    if spec.architecture.family == "fastvit":
        from tests import reference_mobileclip as mobileclip

        model = mobileclip.make_reference(spec.architecture, 0, spec.openclip_name)
        mobileclip.make_discriminative(model, mobileclip.spec_pixels(pixels_from[:16], spec), 1)
    else:
        from tests.reference import make_discriminative, make_reference, reference_pixels

        model = make_reference(spec.architecture, seed=0)
        pixels = reference_pixels(pixels_from[:8], pre.size, pre.mean, pre.std)
        make_discriminative(model, pixels, ATTENTION)
    torch.set_grad_enabled(False)
    return model


def export_for_rclip(model, datadir: Path) -> None:
    """rclip's data folder layout, its two ONNX files exported as its conversion script does."""
    import torch

    class Visual(torch.nn.Module):
        def __init__(self, clip) -> None:
            super().__init__()
            self.visual = clip.visual

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.visual(inputs)

    class Textual(torch.nn.Module):
        def __init__(self, clip) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_text(inputs)

    folder = datadir / RCLIP_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        for wrapper, example, file in (
            (Visual(model), torch.randn(1, 3, size, size), "visual.onnx"),
            (Textual(model), torch.zeros(1, 77, dtype=torch.long), "textual.onnx"),
        ):
            wrapper.eval()
            torch.onnx.export(
                wrapper,
                (example,),
                str(folder / file),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=18,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    vocab = datadir / RCLIP_VOCAB
    vocab.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "models" / "bpe_simple_vocab_16e6.txt.gz", vocab)


def ours_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def ours_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, CLIPSEARCH_HOME=str(home), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def install_ours(name: str, model, workdir: Path) -> Path:
    """Install ``model``'s weights as registry model ``name``; returns the models folder."""
    from tests.reference import save_checkpoint

    home = workdir / "ours-models"
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(model, workdir / f"{name}.safetensors")
    subprocess.run(
        ours_command("model", "install", name, "--from", str(checkpoint)),
        env=ours_env(home),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return home / "data" / "models"


def byte_compile_ours(folder: Path) -> None:
    """Give our code byte-code caches in ``folder`` before it is timed, as rclip's has.

    pip compiles an installed package's modules (rclip's venv has them); our code runs from the
    checkout, and where the environment says not to write caches (``PYTHONDONTWRITEBYTECODE``)
    every process would compile each module again. Our processes get ``folder`` as their cache
    prefix, filled here.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)
    packages = [str(ROOT / name) for name in ("core", "cli")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)


def fresh_rclip_datadir(exported: Path, folder: Path) -> Path:
    """An empty rclip data folder whose model files link to the exported ones."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / RCLIP_SUBDIR).symlink_to(exported / RCLIP_SUBDIR, target_is_directory=True)
    (folder / "tokenizer").symlink_to(exported / "tokenizer", target_is_directory=True)
    return folder


def fresh_home(models: Path, folder: Path) -> Path:
    """An empty ``CLIPSEARCH_HOME`` whose models folder links to the installed models."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "models").symlink_to(models, target_is_directory=True)
    return folder


def rclip_env(datadir: Path) -> dict[str, str]:
    """rclip's environment: its data folder, offline, none of our Python settings."""
    env = dict(os.environ, RCLIP_DATADIR=str(datadir), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONPYCACHEPREFIX", None)  # rclip's byte code is in its venv, made at install
    return env


def run_rclip(rclip: str, album: Path, datadir: Path) -> tuple[float, int]:
    """Seconds for rclip to index ``album`` and answer one query; photos in its index."""
    start = time.perf_counter()
    done = subprocess.run(
        [rclip, "-f", "-t", "1", QUERY],
        cwd=album,
        env=rclip_env(datadir),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"rclip failed ({done.returncode}): {done.stderr[-2000:]}")
    with sqlite3.connect(datadir / "db.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM images WHERE deleted IS NULL").fetchone()
    return seconds, int(count)


def run_ours(name: str, album: Path, home: Path, precision: str) -> tuple[float, float, int, str]:
    """Seconds to index ``album`` and then answer one query, seconds of the index alone, photos
    indexed, and the precision line ``index`` printed."""
    env = ours_env(home)
    start = time.perf_counter()
    indexed = subprocess.run(
        ours_command("index", str(album), "--model", name, "--precision", precision, "--json"),
        env=env,
        capture_output=True,
        text=True,
    )
    index_s = time.perf_counter() - start
    if indexed.returncode != 0:
        raise SystemExit(f"our index failed ({indexed.returncode}): {indexed.stderr[-2000:]}")
    searched = subprocess.run(
        ours_command("search", QUERY, "--top", "1", "--model", name),
        env=env,
        capture_output=True,
        text=True,
    )
    total_s = time.perf_counter() - start
    if searched.returncode != 0:
        raise SystemExit(f"our search failed ({searched.returncode}): {searched.stderr[-2000:]}")
    summary = json.loads(indexed.stdout)
    said = [line for line in indexed.stderr.splitlines() if "encoding with" in line]
    return total_s, index_s, int(summary["indexed"]), (said[0] if said else "")


def time_query(command: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """Seconds of one whole query process (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def query_rounds(
    rclip: str, album: Path, exported: Path, models: dict[str, Path], workdir: Path, rounds: int
) -> tuple[dict[str, list[float]], str]:
    """Index ``album`` once with rclip and with each of our models, then time ``rounds`` rounds
    of one query process each, the order alternating; the seconds of every query, by program,
    and the load average before the rounds."""
    datadir = fresh_rclip_datadir(exported, workdir / "query-rclip")
    run_rclip(rclip, album, datadir)
    commands: dict[str, tuple[list[str], dict[str, str], Path | None]] = {
        "rclip": ([rclip, "-n", "-f", "-t", "1", QUERY], rclip_env(datadir), album)
    }
    for name, installed in models.items():
        home = fresh_home(installed, workdir / f"query-{name}")
        env = ours_env(home)
        subprocess.run(
            ours_command("index", str(album), "--model", name), env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        commands[name] = (ours_command("search", QUERY, "--top", "1", "--model", name), env, None)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    for command, env, cwd in commands.values():  # once each, untimed: warm the page cache
        time_query(command, env, cwd)
    times: dict[str, list[float]] = {engine: [] for engine in commands}
    engines = list(commands)
    for round_ in range(rounds):
        for engine in engines if round_ % 2 == 0 else engines[::-1]:
            times[engine].append(time_query(*commands[engine]))
    return times, load


def same_weights(models: Path, datadir: Path) -> str:
    """How close rclip's stored vectors are to ours for the same photos, in words.

    rclip 3.3 does not turn a photo upright by its EXIF orientation tag, so the photos that have
    one (other than 1) are counted apart.
    """
    from PIL import Image

    from core.encoder import ClipModel

    with sqlite3.connect(datadir / "db.sqlite3") as db:
        rows = db.execute("SELECT filepath, vector FROM images").fetchall()
    theirs = np.stack([np.frombuffer(vector, np.float32) for _, vector in rows])
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    paths = [Path(path) for path, _ in rows]
    with ClipModel(models / RCLIP_MODEL, precision="fp32", draft=False) as model:
        cosine = np.sum(model.encode_images(paths) * theirs, axis=1)
    turned = []
    for path in paths:
        with Image.open(path) as image:
            turned.append(image.getexif().get(0x0112, 1) not in (1, None))
    upright = cosine[~np.array(turned)]
    return (
        f"lowest cosine {upright.min():.6f} over the {len(upright)} photos without an EXIF "
        f"rotation; the {sum(turned)} with one differ (cosine {cosine[np.array(turned)].min():.2f} "
        "and up) because rclip 3.3 does not turn photos upright"
        if any(turned)
        else f"lowest cosine {cosine.min():.6f} over {len(cosine)} photos"
    )


def breakdown(models: dict[str, Path], album: Path, threads: int) -> list[str]:
    """Where an indexing run's time goes, per photo: decoding and preprocessing on one thread
    (JPEG draft decoding, as indexing does), and the image tower alone on ``threads`` threads at
    batch 8 on those pixels (at the default precision), for each of our models."""
    from core.encoder import ClipModel

    paths = sorted(p for p in album.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    lines = [
        "| model | decode + preprocess, 1 thread (ms per photo) | image tower, batch 8, "
        f"{threads} threads (ms per photo) | image tower alone (photos/s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, folder in models.items():
        with ClipModel(folder / name, threads=threads) as model:
            model.preprocess(paths[0])
            start = time.perf_counter()
            pixels = np.stack([model.preprocess(path) for path in paths])
            decode = (time.perf_counter() - start) / len(paths)
            model.encode_pixels(pixels[:8])
            start = time.perf_counter()
            for i in range(0, len(pixels), 8):
                model.encode_pixels(pixels[i : i + 8])
            encode = (time.perf_counter() - start) / len(paths)
        lines.append(
            f"| {name}, {model.precision} | {1000 * decode:.0f} | {1000 * encode:.0f} | "
            f"{1 / encode:.2f} |"
        )
        print(lines[-1], flush=True)
    return lines


def query_lines(
    times: dict[str, list[float]], load: str, photos: int, what: str, version: str, rounds: int
) -> list[str]:
    """The RESULTS section of ``--queries``."""
    rclip = statistics.median(times["rclip"])
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores (flags: "
        f"{', '.join(cpu_flags()) or 'no AVX-512, no AMX'}); load average {load} before the "
        f"rounds; {version.strip()}; {dt.date.today().isoformat()}; "
        f"`python bench/rclip_e2e.py {shown_arguments(sys.argv[1:])}`.",
        "",
        f"Album: {photos} photos, {what}, indexed once by each program. Each round runs one "
        f'query as a whole process: rclip\'s `rclip -n -f -t 1 "{QUERY}"` in the album (no '
        f'index update), ours `search "{QUERY}" --top 1 --model NAME`; {rounds} rounds, the '
        "order alternating, after one untimed query each. Both programs' Python modules "
        "byte-compiled beforehand.",
        "",
        "| program | model | median (s) | fastest (s) | slowest (s) | rclip / this (medians) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for engine, seconds in times.items():
        program, model = ("rclip 3.3", RCLIP_MODEL) if engine == "rclip" else ("ours", engine)
        median = statistics.median(seconds)
        lines.append(
            f"| {program} | {model} | {median:.3f} | {min(seconds):.3f} | {max(seconds):.3f} | "
            f"{rclip / median:.2f}x |"
        )
    return lines


def shown_arguments(argv: list[str]) -> str:
    """The command's arguments for RESULTS, with the machine's own paths as placeholders."""
    shown, hide = [], {"--rclip": "RCLIP", "--workdir": "WORK", "--album": "ALBUM"}
    for i, arg in enumerate(argv):
        shown.append(hide[argv[i - 1]] if i and argv[i - 1] in hide else arg)
    return " ".join(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rclip", required=True, help="the rclip program of its own venv")
    parser.add_argument("--models", nargs="+", default=[RCLIP_MODEL], help="our models to time")
    parser.add_argument("--precision", default="auto", help="our --precision (default: auto)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=6, help="copies of each source photo")
    parser.add_argument(
        "--source",
        type=Path,
        default=SHARED_SAMPLES,
        help="folder whose large JPEGs are copied into the album (default: the shared samples "
        "beside the repository; tests/photos where they are absent)",
    )
    parser.add_argument("--album", type=Path, help="index this folder as it is instead")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="instead of the rounds: time decoding and the image tower alone, per model",
    )
    parser.add_argument(
        "--queries",
        type=int,
        metavar="N",
        help="instead of the rounds: index once, then time N rounds of one query process each",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    workdir = scratch_folder("clipsearch-rclip-e2e-", args.workdir)
    version = subprocess.run([args.rclip, "--version"], capture_output=True, text=True).stdout
    sources, what = album_sources(args.source)
    if args.album is not None:
        album = args.album.resolve()
        what = f"the folder given ({album.name})"
    else:
        album = workdir / "album"
        shutil.rmtree(album, ignore_errors=True)
        make_album(album, sources, args.copies)
        what = f"{args.copies} distinct copies of the {len(sources)} {what}"
    photos = sum(1 for p in album.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    print(f"{cpu_model()}; {version.strip()}; album: {photos} photos, {what}", flush=True)

    exported = workdir / "rclip-model"
    models: dict[str, Path] = {}
    for name in dict.fromkeys([RCLIP_MODEL, *args.models]):
        model = reference_model(name, sources)
        if name == RCLIP_MODEL and not (exported / RCLIP_SUBDIR / "textual.onnx").is_file():
            export_for_rclip(model, exported)
        models[name] = install_ours(name, model, workdir / name)

    if args.breakdown:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        lines = [
            f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {load} at the start; "
            f"{dt.date.today().isoformat()}; `python bench/rclip_e2e.py "
            f"{shown_arguments(sys.argv[1:])}`. The same album and weights as above, in one "
            "process: every photo decoded and preprocessed one after the other, then the image "
            "tower alone on those pixels.",
            "",
            *breakdown({name: models[name] for name in args.models}, album, os.cpu_count() or 1),
        ]
        if not args.no_write:
            write_section("## End to end against rclip: where the time goes", lines)
        return

    byte_compile_ours(workdir / "pycache")
    if args.queries:
        chosen = {name: models[name] for name in args.models}
        times, load = query_rounds(args.rclip, album, exported, chosen, workdir, args.queries)
        lines = query_lines(times, load, photos, what, version, args.queries)
        print("\n".join(lines), flush=True)
        if not args.no_write:
            write_section("## A query from the command line against rclip", lines)
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    probe = fresh_rclip_datadir(exported, workdir / "probe-rclip")
    run_rclip(args.rclip, album, probe)
    agreement = same_weights(models[RCLIP_MODEL], probe)
    print(f"rclip's vectors against ours, same photos: {agreement}", flush=True)

    times: dict[str, list[float]] = {"rclip": []}
    index_only: dict[str, list[float]] = {}
    precisions: dict[str, str] = {}
    counts: dict[str, int] = {}
    engines = ["rclip", *args.models]
    for round_ in range(args.rounds):
        order = engines if round_ % 2 == 0 else engines[::-1]
        for engine in order:
            folder = workdir / "rounds" / f"{round_}-{engine}"
            shutil.rmtree(folder, ignore_errors=True)
            if engine == "rclip":
                seconds, counts[engine] = run_rclip(
                    args.rclip, album, fresh_rclip_datadir(exported, folder)
                )
            else:
                home = fresh_home(models[engine], folder)
                seconds, alone, counts[engine], said = run_ours(engine, album, home, args.precision)
                index_only.setdefault(engine, []).append(alone)
                precisions[engine] = said.split(" in ", 1)[-1] if said else "?"
            times.setdefault(engine, []).append(seconds)
            print(f"round {round_ + 1} {engine}: {seconds:.2f} s, {counts[engine]} photos",
                  flush=True)  # fmt: skip
            shutil.rmtree(folder, ignore_errors=True)

    rclip_rate = counts["rclip"] / min(times["rclip"])
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores (flags: "
        f"{', '.join(cpu_flags()) or 'no AVX-512, no AMX'}); load average {load} before the "
        f"rounds; {version.strip()} from the "
        f"package index in its own venv; {dt.date.today().isoformat()}; "
        f"`python bench/rclip_e2e.py {shown_arguments(sys.argv[1:])}`.",
        "",
        f"Album: {photos} photos, {what}. Same random weights for rclip and ours (ViT-B-32-256 "
        f"attention sharpened x{ATTENTION:g}; rclip's stored vectors against ours on the same "
        f"photos: {agreement}). Each run is whole processes from an empty "
        f'index: rclip\'s `rclip -f -t 1 "{QUERY}"` in the album (index, then one query), ours '
        f'`index ALBUM` then `search "{QUERY}" --top 1`; {args.rounds} rounds, the order '
        "alternating. Page cache warm; both programs' Python modules byte-compiled beforehand "
        "(rclip's by pip at install, ours into the work folder).",
        "",
        "| program | model, precision | photos | photos/s (best) | every round (s) "
        "| index alone (s, best) | vs rclip |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| rclip 3.3 | ViT-B-32-256, ONNX Runtime float32 | {counts['rclip']} | "
        f"{rclip_rate:.2f} | {', '.join(f'{t:.1f}' for t in times['rclip'])} | - | 1.00x |",
    ]
    for engine in args.models:
        rate = counts[engine] / min(times[engine])
        lines.append(
            f"| ours | {engine}, {precisions[engine]} | {counts[engine]} | {rate:.2f} | "
            f"{', '.join(f'{t:.1f}' for t in times[engine])} | {min(index_only[engine]):.1f} | "
            f"{rate / rclip_rate:.2f}x |"
        )
    print("\n".join(lines), flush=True)
    if not args.no_write:
        write_section("## End to end against rclip", lines)
        data = json.loads(MEASURED.read_text(encoding="utf-8"))
        speed = data.setdefault("speed", {})
        speed["about"] = (
            "Photos indexed per second, end to end (whole processes from an empty index), by "
            "bench/rclip_e2e.py; see bench/RESULTS.md. Shown by model list and the first-run "
            "dialog."
        )
        speed["measured_on"] = (
            f"{cpu_model()}, {os.cpu_count()} cores, indexing {photos} photos ({what}), "
            f"{dt.date.today().isoformat()}"
        )
        speed["models"] = {
            engine: {
                "images_per_s": round(counts[engine] / min(times[engine]), 2),
                "precision": precisions[engine],
            }
            for engine in args.models
        }
        MEASURED.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
