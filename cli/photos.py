"""The commands over the photo library: ``index``, ``search``, ``describe`` and ``timeline``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ClipsearchError
from core.languages import script_hint
from core.names import path_fields
from core.precision import PRECISIONS
from core.query import MAX_LABELS, MAX_TERMS
from core.scoring import RULE_HELP
from tui.text import plural

if TYPE_CHECKING:
    from core.encoder import ClipModel
    from core.indexer import IndexSummary
    from core.library import Library
    from core.timeline import Bucket, Timeline
    from tui.config import TuiConfig

from cli.arguments import model_name_arg, path_arg
from cli.output import (
    EXIT_INTERRUPTED,
    PROG,
    ProgressBar,
    isatty,
    print_json,
    print_line,
    print_null_separated,
    usage_error,
)


def _add_model_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--model",
        type=model_name_arg,
        metavar="NAME",
        help="model to encode with (default: the model setting, else the library's model)",
    )


def _add_gpu_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--gpu",
        action="store_true",
        help="encode on a Vulkan GPU when there is one (else on the CPU, with a note)",
    )


def add_index_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    index = commands.add_parser(
        "index",
        help="index album folders: new and changed photos are encoded",
        description=(
            "Add album folders to the library and encode their new and changed photos. A "
            "progress bar goes to stderr; the summary (or, with --json, one JSON object) to "
            "stdout. Ctrl-C stops after the photos being encoded and keeps every photo done "
            "so far (exit code 130); the next run encodes only the rest."
        ),
    )
    index.add_argument("paths", nargs="+", type=path_arg, metavar="PATH", help="album folder")
    _add_model_option(index)
    index.add_argument(
        "--since", type=_date_arg, metavar="DATE", help="encode only photos taken from DATE on"
    )
    index.add_argument(
        "--until", type=_date_arg, metavar="DATE", help="encode only photos taken up to DATE"
    )
    index.add_argument(
        "--reindex",
        action="store_true",
        help="the library holds another model's embeddings, or this model's from weights "
        "installed before: drop them and encode every photo again with --model",
    )
    index.add_argument(
        "--retry-failed",
        action="store_true",
        help="try again the photos that failed before, although their files have not changed "
        "(after installing a decoder, say); otherwise a failed photo is tried again once its "
        "file changes",
    )
    index.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON (a name that is not valid UTF-8 has U+FFFD in path and "
        "its exact bytes in base64 in path_bytes)",
    )
    index.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="arithmetic of the encoder (default: the precision setting, else auto): auto "
        "(bf16 where the CPU has native bf16 and it was measured accurate enough, else "
        "float32), fp32 (exact), bf16, or int8 (models installed with --precision int8)",
    )
    _add_gpu_option(index)
    index.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="encode on the workers of a Dask cluster (a distributed scheduler address such as "
        "tcp://nas:8786); the album must be at the same path on every worker, and the model "
        "installed there under the same name (pip install '.[cluster]')",
    )
    index.set_defaults(handler=_index)


def add_search_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    search = commands.add_parser(
        "search",
        help="find photos by a text or image query",
        description=(
            "Rank the indexed photos by similarity to QUERY, and print one path per line, best "
            'first. Terms combine with + and -, weights as 2:cat or 0.5:"red car"; a term that '
            "starts with ./, ../, / or ~, or with img:, is an image file; at most "
            f"{MAX_TERMS} terms. The words of QUERY are joined with spaces, so  search beach + "
            "sunset - people  needs no quotes."
        ),
    )
    search.add_argument("query", nargs="*", metavar="QUERY", help="the query")
    search.add_argument(
        "--similar", type=path_arg, metavar="IMAGE", help="find photos like this image instead"
    )
    search.add_argument(
        "--top", type=_positive_int, default=20, metavar="N", help="hits to show (default: 20)"
    )
    search.add_argument(
        "--in", dest="folder", type=path_arg, metavar="PATH", help="only this folder"
    )
    search.add_argument(
        "--since", type=_date_arg, metavar="DATE", help=f"only photos taken from DATE on; {DATES}"
    )
    search.add_argument(
        "--until", type=_date_arg, metavar="DATE", help="only photos taken up to DATE"
    )
    _add_model_option(search)
    _add_gpu_option(search)
    formats = search.add_mutually_exclusive_group()
    formats.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of objects: path, rank, score, probability, taken_at (a name "
        "that is not valid UTF-8 has U+FFFD in path and its exact bytes in base64 in "
        "path_bytes); " + RULE_HELP,
    )
    formats.add_argument(
        "-0",
        "--null",
        action="store_true",
        help="print only the paths, each followed by a NUL byte, exactly as they are on disk "
        "(for xargs -0)",
    )
    search.set_defaults(handler=_search, parser=search)

    describe = commands.add_parser(
        "describe",
        help="rank text labels by how well they describe an image",
        description="Zero-shot classification: score each label against IMAGE.",
    )
    describe.add_argument("image", type=path_arg, metavar="IMAGE", help="an image file")
    describe.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="TEXT",
        help=f"candidate descriptions (at most {MAX_LABELS}; each is encoded)",
    )
    _add_model_option(describe)
    _add_gpu_option(describe)
    describe.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of label, score, probability; " + RULE_HELP,
    )
    describe.set_defaults(handler=_describe)

    timeline = commands.add_parser(
        "timeline",
        help="photos per year, month and day, and in recent periods",
        description="Count the photos of the library (or of PATH) by capture date.",
    )
    timeline.add_argument(
        "path", nargs="?", type=path_arg, metavar="PATH", help="only photos in this folder"
    )
    timeline.add_argument("--json", action="store_true", help="print the buckets as JSON")
    timeline.set_defaults(handler=_timeline)


def _index(args: argparse.Namespace) -> int:
    from core.indexer import index
    from core.library import Library

    since, until = _date_range(args)
    for path in args.paths:  # a mistyped folder is reported before any model is opened
        existing_folder(path, "photo folder")
    settings = _settings()
    with Library.open() as library:
        name = args.model or settings.model or library.model_name
        precision = args.precision or settings.precision
        with _load_model(name, gpu=args.gpu or settings.gpu, precision=precision) as model:
            print(f"{PROG}: encoding with {model.name} in {model.precision}", file=sys.stderr)
            if args.reindex:
                library.use_model(model.name, model.embed_dim, weights=model.weights, replace=True)
            cancel = threading.Event()
            bar = ProgressBar(sys.stderr)
            try:
                with _interrupt_sets(cancel):
                    summary = index(
                        library,
                        model,
                        args.paths,
                        since=since,
                        until=until,
                        progress=bar,
                        cancel=cancel,
                        batch_size=settings.batch_size,
                        cluster=args.dask,
                        retry_failed=args.retry_failed,
                    )
            finally:
                bar.close()
    if args.json:
        print_json(summary.to_dict())
    else:
        _print_index_summary(summary)
    if summary.cancelled:
        print(f"{PROG}: cancelled; the photos indexed so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _search(args: argparse.Namespace) -> int:
    from core.library import Library
    from core.query import parse_query
    from core.ranking import search, similar

    text = " ".join(args.query).strip()
    if args.similar is not None and text:
        return usage_error(args.parser, "give a QUERY or --similar IMAGE, not both")
    if args.similar is None and not text:
        return usage_error(args.parser, "give a QUERY, or --similar IMAGE")
    if text:  # syntax errors and missing image files before anything is loaded
        for term in parse_query(text):
            if term.kind == "image":
                _existing_image(term.value)
    else:
        _existing_image(str(args.similar))
    since, until = _date_range(args)
    folder = existing_folder(args.folder) if args.folder is not None else None
    with Library.open() as library:
        _require_indexed(library)
        settings = _settings()
        with _load_model(
            args.model or settings.model or library.model_name,
            gpu=args.gpu or settings.gpu,
            precision=settings.precision,
        ) as model:
            hint = script_hint(model.spec, text) if text else None
            if hint is not None:  # an English-only model meets Chinese, Cyrillic, Arabic...
                print(f"{PROG}: {hint}", file=sys.stderr)
            if args.similar is not None:
                hits = similar(
                    library,
                    model,
                    args.similar,
                    top=args.top,
                    since=since,
                    until=until,
                    folder=folder,
                )
            else:
                hits = search(
                    library, model, text, top=args.top, since=since, until=until, folder=folder
                )
    if args.json:
        print_json(
            [
                {
                    **path_fields(str(hit.photo.path)),
                    "rank": hit.rank,
                    "score": hit.score,
                    "probability": hit.probability,
                    "taken_at": hit.photo.taken_at.isoformat() if hit.photo.taken_at else None,
                }
                for hit in hits
            ]
        )
        return 0
    if args.null:
        print_null_separated([str(hit.photo.path) for hit in hits])
        return 0
    tty = isatty(sys.stdout)
    if not tty:  # through a pipe: one path per line (escaped; -0 gives the exact names)
        for hit in hits:
            print_line(str(hit.photo.path), tty)
        return 0
    digits = len(str(max((hit.rank for hit in hits), default=1)))
    for hit in hits:
        when = hit.photo.taken_at.strftime("%Y-%m-%d %H:%M") if hit.photo.taken_at else "no date"
        print_line(
            f"{hit.rank:>{digits}}  {hit.probability:6.1%}  {when:<16}  {hit.photo.path}", tty
        )
    return 0


def _describe(args: argparse.Namespace) -> int:
    from core.library import Library
    from core.ranking import check_labels, describe

    _existing_image(str(args.image))
    check_labels(args.labels)  # too many labels is said before a library or model is opened
    with Library.open() as library:
        settings = _settings()
        with _load_model(
            args.model or settings.model or library.model_name,
            gpu=args.gpu or settings.gpu,
            precision=settings.precision,
        ) as model:
            labels = describe(model, args.image, args.labels, library=library)
    if args.json:
        print_json(
            [{"label": x.label, "score": x.score, "probability": x.probability} for x in labels]
        )
        return 0
    tty = isatty(sys.stdout)
    for label in labels:
        print_line(f"{label.probability:7.2%}  {label.score:+.4f}  {label.label}", tty)
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from core.library import Library

    with Library.open() as library:
        if args.path is None:
            timeline = library.timeline()
        else:
            timeline = _folder_timeline(library, existing_folder(args.path))
    if args.json:
        print_json(
            {
                "relative": [_bucket_dict(bucket) for bucket in timeline.relative],
                "years": [_bucket_dict(bucket) for bucket in timeline.years],
            }
        )
        return 0
    rows: list[tuple[str, Bucket]] = [("", bucket) for bucket in timeline.relative]
    for year in timeline.years:
        rows.append(("", year))
        for month in year.children:
            rows.append(("  ", month))
            rows.extend(("    ", day) for day in month.children)
    width = max(len(indent + bucket.label) for indent, bucket in rows)
    digits = max(len(str(bucket.count)) for _, bucket in rows)
    tty = isatty(sys.stdout)
    for i, (indent, bucket) in enumerate(rows):
        if i == len(timeline.relative):
            print()
        name = (indent + bucket.label).ljust(width)
        photos = "photo" if bucket.count == 1 else "photos"
        print_line(f"{name}  {bucket.count:>{digits}} {photos}, {bucket.indexed} indexed", tty)
    return 0


# -- helpers of the index, search, describe and timeline commands -------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


DATES = (
    "DATE is YYYY, YYYY-MM, YYYY-MM-DD, a key that timeline prints (last-7-days, ...), today, "
    "yesterday, or a time ago (7d, 2w, 3m, 1y)"
)


def _settings() -> TuiConfig:
    """The settings shared with the app (model, gpu, batch size, precision) from config.toml.

    Options given on the command line win. A settings file that cannot be read is reported in
    one line and the defaults are used, so that a typo there never stops a command.
    """
    from tui.config import ConfigError, TuiConfig, load_config

    try:
        return load_config()
    except ConfigError as error:
        print(
            f"{PROG}: {' '.join(str(error).split())}; using the default settings", file=sys.stderr
        )
        return TuiConfig()


def _date_arg(text: str) -> str:
    """Check a ``--since``/``--until`` value while parsing, so that a bad one is a usage error."""
    from core.errors import BadDateError
    from core.timeline import parse_date

    try:
        parse_date(text)
    except BadDateError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _date_range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as naive wall-clock times; ``--until 2019-05`` includes May."""
    from core.capture_time import wall_time
    from core.errors import BadDateError
    from core.timeline import parse_date

    since = wall_time(parse_date(args.since)) if args.since else None
    until = wall_time(parse_date(args.until, end=True)) if args.until else None
    if since is not None and until is not None and since >= until:
        raise BadDateError(
            f'bad date range: --since "{args.since}" is not before --until "{args.until}"'
        )
    return since, until


def existing_folder(path: Path, what: str = "folder") -> Path:
    from core.errors import AlbumNotFoundError

    folder = path.expanduser().absolute()
    if not folder.is_dir():
        raise AlbumNotFoundError(
            f"{what} not found: {folder}" if not folder.exists() else f"not a folder: {folder}"
        )
    return folder


def _existing_image(value: str) -> None:
    """Refuse an image argument that names no regular file, before a library or model is opened
    (:func:`core.query.existing_image`)."""
    from core.query import existing_image

    existing_image(value)


def _load_model(name: str | None, *, gpu: bool = False, precision: str = "auto") -> ClipModel:
    """Open an installed model (default: the registry's default model), checked.

    Every file of the model is checked against its install-time hash; one whose size, times and
    inode are unchanged since it last matched is not read again, so the check costs a few
    ``stat`` calls, and a file that changed is hashed (with a note that it changed). ``gpu`` asks
    for Vulkan; without a Vulkan GPU a note says so and the model runs on the CPU. A note about
    the ``precision`` chosen (bf16 emulated on this CPU) is printed too. A name that is neither
    installed nor in the registry is reported as unknown, with the command that lists the
    models, rather than with an install command that would fail.
    """
    from core.catalog import known_specs
    from core.encoder import load_model
    from core.errors import ModelNotInstalledError, UnknownModelError
    from core.paths import is_model_name

    try:
        model = load_model(name, vulkan=gpu, precision=precision)
    except ModelNotInstalledError:
        if name is not None and is_model_name(name) and name not in known_specs():
            raise UnknownModelError(
                f"unknown model {name!r}; see the models with: {PROG} model list"
            ) from None
        raise
    if gpu and not model.vulkan:
        print(f"{PROG}: no Vulkan GPU found; encoding on the CPU", file=sys.stderr)
    if model.precision.note:
        print(f"{PROG}: {model.precision.note}", file=sys.stderr)
    return model


def _require_indexed(library: Library) -> None:
    from core.ranking import NoCandidatesError

    if library.model_name is None or not library.stats()["indexed"]:
        raise NoCandidatesError(
            "no indexed photos match: the library has no indexed photos yet; "
            "index a folder first (clipsearch-tui index FOLDER)"
        )


def _folder_timeline(library: Library, folder: Path) -> Timeline:
    """The timeline of the library's photos inside ``folder``, indexed or not."""
    timeline = library.timeline(folder=folder)
    if not any(bucket.count for bucket in timeline.years):
        raise ClipsearchError(
            f"the library has no photos in {folder}; index it first: {PROG} index {folder}"
        )
    return timeline


def _bucket_dict(bucket: Bucket) -> dict[str, Any]:
    return {
        "key": bucket.key,
        "label": bucket.label,
        "kind": bucket.kind,
        "start": bucket.start.isoformat(),
        "end": bucket.end.isoformat(),
        "count": bucket.count,
        "indexed": bucket.indexed,
        "children": [_bucket_dict(child) for child in bucket.children],
    }


def _print_index_summary(summary: IndexSummary) -> None:
    tty = isatty(sys.stdout)
    found = ", ".join(
        f"{count} {what}"
        for count, what in (
            (summary.new, "new"),
            (summary.changed, "changed"),
            (summary.moved, "moved"),
            (summary.copied, "copied"),
            (summary.deleted, "deleted"),
        )
        if count
    )
    print(
        f"indexed {summary.indexed}, unchanged {summary.unchanged}, skipped "
        f"{len(summary.skipped)}, failed {len(summary.failed)} in {summary.elapsed_s:.1f} s"
        + (f" ({found})" if found else "")
    )
    for title, items in (("skipped", summary.skipped), ("failed", summary.failed)):
        if items:
            print(f"{title}:")
            for path, reason in items:
                print_line(f"  {path}: {' '.join(reason.split())}", tty)
    if summary.vanished:
        gone = plural(summary.vanished, "photo was", "photos were")
        print(f"{gone} gone when read (a folder unmounted or moved?); the next run tries again")
    if summary.remaining:
        pending = plural(summary.remaining, "photo is", "photos are")
        why = (
            "outside --since/--until, cancelled, or gone when read"
            if summary.vanished
            else "outside --since/--until, or cancelled"
        )
        print(f"{pending} still pending ({why})")


@contextlib.contextmanager
def _interrupt_sets(cancel: threading.Event) -> Iterator[None]:
    """Within the block, Ctrl-C sets ``cancel`` instead of raising; a second Ctrl-C raises."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print(
            f"\n{PROG}: stopping after the photos being encoded (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
