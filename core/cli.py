"""The ``clipsearch-tui`` command line.

::

    clipsearch-tui [PATH ...]                  open the app (on these album folders)
    clipsearch-tui --version
    clipsearch-tui model install [NAME] [--from FILE|FOLDER] [--as NEWNAME] [--quick-gelu]
                                 [--precision {fp32,int8}] [--keep-checkpoint]
    clipsearch-tui model list [--json]
    clipsearch-tui model remove NAME
    clipsearch-tui index PATH... [--model NAME] [--since DATE] [--until DATE] [--reindex] [--json]
                         [--precision {auto,fp32,bf16,int8}] [--dask ADDRESS]
    clipsearch-tui search QUERY... [--top N] [--in PATH] [--since DATE] [--until DATE]
                                [--model NAME] [--json]
    clipsearch-tui search --similar IMAGE [same options]
    clipsearch-tui describe IMAGE --labels TEXT... [--model NAME] [--json]
    clipsearch-tui timeline [PATH] [--json]

Each command group is added by one ``_add_*_commands(subparsers)`` function listed in
:data:`_COMMAND_GROUPS`; a command's handler takes the parsed arguments and returns the exit code.
Every :class:`~core.errors.ClipsearchError` is printed as one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ClipsearchError
from core.manifest import clipsearch_version
from core.precision import PRECISIONS
from core.scoring import RULE_HELP

if TYPE_CHECKING:
    from core.album import Bucket, Timeline
    from core.encoder import ClipModel
    from core.indexer import IndexProgress, IndexSummary
    from core.install import HubFile
    from core.store import Library

PROG = "clipsearch-tui"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LaunchApp = Callable[[list[Path], str, bool], int | None]
IMAGE_MODES = ("auto", "kitty", "sixel", "halfcell", "none")
Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None, launch_app: LaunchApp | None = None) -> int:
    """Run one command and return the process exit code.

    Parameters
    ----------
    argv
        Arguments without the program name; ``sys.argv[1:]`` when None.
    launch_app
        Called with the album folders given on the command line when no command is named. When
        None, the help is printed instead.

    Returns
    -------
    int
        0 on success, 1 for an error, 2 for a usage error, 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exit_:
        return _exit_code(exit_)
    notes = _EngineNotes()
    engine_log = logging.getLogger("core")
    level = engine_log.level
    engine_log.addHandler(notes)
    engine_log.setLevel(logging.INFO)
    try:
        handler: Handler | None = getattr(args, "handler", None)
        if handler is not None:
            return handler(args)
        if launch_app is None:
            parser.print_help()
            return 0
        missing = [path for path in args.paths if not path.is_dir()]
        if missing:
            commands = ", ".join(sorted(_command_names(parser)))
            return _usage(parser, f"{missing[0]}: no such folder (commands are: {commands})")
        return int(launch_app(list(args.paths), args.images, args.gpu) or 0)
    except ClipsearchError as error:
        _print_error(str(error))
        _print_way_round(error)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    finally:
        engine_log.removeHandler(notes)
        engine_log.setLevel(level)


def build_parser() -> argparse.ArgumentParser:
    """The full parser: top-level options, album folders, and every command group."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Search your own photo album in natural language, from a terminal.",
        usage=f"{PROG} [-h] [--version] [--images MODE] [--gpu] [PATH ...] | {PROG} COMMAND ...",
        epilog=f"With no command, {PROG} opens the app, on the album folders PATH if given.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {clipsearch_version()}")
    parser.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="auto",
        help="how the app draws thumbnails: detected (auto), Kitty or Sixel graphics, "
        "half-cell blocks (any terminal, SSH, tmux) or none",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the app encodes on a Vulkan GPU when there is one (the gpu setting)",
    )
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", prog=PROG)
    for add_commands in _COMMAND_GROUPS:
        add_commands(commands)
    return parser


def _add_gpu_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--gpu",
        action="store_true",
        help="encode on a Vulkan GPU when there is one (else on the CPU, with a note)",
    )


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="install, list and remove CLIP models")
    actions = model.add_subparsers(
        title="model commands", dest="model_command", metavar="ACTION", prog=f"{PROG} model"
    )
    model.set_defaults(handler=lambda args: _usage(model, "choose an action"))

    install = actions.add_parser(
        "install",
        help="download (or read) a checkpoint and convert it",
        description=(
            "Download a registry model from the model hub (HF_ENDPOINT, HF_HOME and "
            "HF_HUB_OFFLINE apply), or install one from a local checkpoint file."
        ),
    )
    install.add_argument(
        "name", nargs="?", metavar="NAME", help="registry model name (default: the default model)"
    )
    install.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="FILE|FOLDER",
        help="install from a local .safetensors or .bin checkpoint, or from a folder holding the "
        "files of the model's hub repository (checkpoint and, for models that have them, "
        "tokenizer files), instead of a download",
    )
    install.add_argument(
        "--as", dest="as_name", metavar="NEWNAME", help="install a checkpoint under this name"
    )
    install.add_argument(
        "--quick-gelu",
        action="store_true",
        default=None,
        help="the checkpoint uses QuickGELU (OpenAI-trained weights); only with --from --as",
    )
    install.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="image tower arithmetic: fp32 (exact, default) or int8 (faster indexing, "
        "embeddings move slightly)",
    )
    install.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the downloaded checkpoint in the download cache after converting it "
        "(by default it is deleted, so the model does not take its disk space twice)",
    )
    install.set_defaults(handler=_model_install, parser=install)

    listing = actions.add_parser("list", help="show known and installed models")
    listing.add_argument("--json", action="store_true", help="print a JSON list of objects")
    listing.set_defaults(handler=_model_list)

    remove = actions.add_parser("remove", help="delete an installed model")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=_model_remove)


def _add_index_commands(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser(
        "index",
        help="index album folders: new and changed photos are encoded",
        description=(
            "Add album folders to the library and encode their new and changed photos. A "
            "progress bar goes to stderr; the summary (or, with --json, one JSON object) to "
            "stdout. Ctrl-C stops after the current batch and keeps the photos done so far "
            "(exit code 130)."
        ),
    )
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="album folder")
    index.add_argument(
        "--model", metavar="NAME", help="model to encode with (default: the library's model)"
    )
    index.add_argument("--since", metavar="DATE", help="encode only photos taken from DATE on")
    index.add_argument("--until", metavar="DATE", help="encode only photos taken up to DATE")
    index.add_argument(
        "--reindex",
        action="store_true",
        help="the library holds another model's embeddings: drop them and encode every photo "
        "again with --model",
    )
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of the encoder: auto (default: bf16 where the CPU has native bf16 and "
        "it was measured accurate enough, else float32), fp32 (exact), bf16, or int8 (models "
        "installed with --precision int8)",
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


def _add_search_commands(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser(
        "search",
        help="find photos by a text or image query",
        description=(
            "Rank the indexed photos by similarity to QUERY, and print one path per line, best "
            'first. Terms combine with + and -, weights as 2:cat or 0.5:"red car"; a term that '
            "starts with ./, ../, / or ~, or with img:, is an image file. The words of QUERY are "
            "joined with spaces, so  search beach + sunset - people  needs no quotes."
        ),
    )
    search.add_argument("query", nargs="*", metavar="QUERY", help="the query")
    search.add_argument(
        "--similar", type=Path, metavar="IMAGE", help="find photos like this image instead"
    )
    search.add_argument(
        "--top", type=_positive_int, default=20, metavar="N", help="hits to show (default: 20)"
    )
    search.add_argument("--in", dest="folder", type=Path, metavar="PATH", help="only this folder")
    search.add_argument("--since", metavar="DATE", help="only photos taken from DATE on")
    search.add_argument("--until", metavar="DATE", help="only photos taken up to DATE")
    search.add_argument("--model", metavar="NAME", help="model (default: the library's model)")
    _add_gpu_option(search)
    search.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of objects: path, rank, score, probability, taken_at; " + RULE_HELP,
    )
    search.set_defaults(handler=_search, parser=search)

    describe = commands.add_parser(
        "describe",
        help="rank text labels by how well they describe an image",
        description="Zero-shot classification: score each label against IMAGE.",
    )
    describe.add_argument("image", type=Path, metavar="IMAGE", help="an image file")
    describe.add_argument(
        "--labels", nargs="+", required=True, metavar="TEXT", help="candidate descriptions"
    )
    describe.add_argument("--model", metavar="NAME", help="model (default: the library's model)")
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
        "path", nargs="?", type=Path, metavar="PATH", help="only photos in this folder"
    )
    timeline.add_argument("--json", action="store_true", help="print the buckets as JSON")
    timeline.set_defaults(handler=_timeline)


def _index(args: argparse.Namespace) -> int:
    from core.indexer import index
    from core.store import Library

    since, until = _date_range(args)
    for path in args.paths:  # a mistyped folder is reported before any model is opened
        _existing_folder(path, "photo folder")
    with Library.open() as library:
        name = args.model or library.model_name
        with _load_model(name, gpu=args.gpu, precision=args.precision) as model:
            print(f"{PROG}: encoding with {model.name} in {model.precision}", file=sys.stderr)
            if args.reindex:
                library.use_model(model.name, model.embed_dim, replace=True)
            cancel = threading.Event()
            bar = _ProgressBar(sys.stderr)
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
                        cluster=args.dask,
                    )
            finally:
                bar.close()
    if args.json:
        _print_json(summary.to_dict())
    else:
        _print_index_summary(summary)
    if summary.cancelled:
        print(f"{PROG}: cancelled; the photos indexed so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _search(args: argparse.Namespace) -> int:
    from core.search import parse_query, search, similar
    from core.store import Library

    text = " ".join(args.query).strip()
    if args.similar is not None and text:
        return _usage(args.parser, "give a QUERY or --similar IMAGE, not both")
    if args.similar is None and not text:
        return _usage(args.parser, "give a QUERY, or --similar IMAGE")
    if text:  # syntax errors and missing image files before anything is loaded
        for term in parse_query(text):
            if term.kind == "image":
                _existing_image(term.value)
    else:
        _existing_image(str(args.similar))
    since, until = _date_range(args)
    folder = _existing_folder(args.folder) if args.folder is not None else None
    with Library.open() as library:
        _require_indexed(library)
        with _load_model(args.model or library.model_name, gpu=args.gpu) as model:
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
        _print_json(
            [
                {
                    "path": str(hit.photo.path),
                    "rank": hit.rank,
                    "score": hit.score,
                    "probability": hit.probability,
                    "taken_at": hit.photo.taken_at.isoformat() if hit.photo.taken_at else None,
                }
                for hit in hits
            ]
        )
        return 0
    tty = _isatty(sys.stdout)
    for hit in hits:
        _print_line(str(hit.photo.path), tty)
    return 0


def _describe(args: argparse.Namespace) -> int:
    from core.search import describe
    from core.store import Library

    _existing_image(str(args.image))
    with Library.open() as library:
        with _load_model(args.model or library.model_name, gpu=args.gpu) as model:
            labels = describe(model, args.image, args.labels, library=library)
    if args.json:
        _print_json(
            [{"label": x.label, "score": x.score, "probability": x.probability} for x in labels]
        )
        return 0
    tty = _isatty(sys.stdout)
    for label in labels:
        _print_line(f"{label.probability:7.2%}  {label.score:+.4f}  {label.label}", tty)
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from core.store import Library

    with Library.open() as library:
        if args.path is None:
            timeline = library.timeline()
        else:
            timeline = _folder_timeline(library, _existing_folder(args.path))
    if args.json:
        _print_json(
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
    tty = _isatty(sys.stdout)
    for i, (indent, bucket) in enumerate(rows):
        if i == len(timeline.relative):
            print()
        name = (indent + bucket.label).ljust(width)
        photos = "photo" if bucket.count == 1 else "photos"
        _print_line(f"{name}  {bucket.count:>{digits}} {photos}, {bucket.indexed} indexed", tty)
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


def _date_range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as naive wall-clock times; ``--until 2019-05`` includes May."""
    from core.album import BadDateError, parse_date, wall_time

    since = wall_time(parse_date(args.since)) if args.since else None
    until = wall_time(parse_date(args.until, end=True)) if args.until else None
    if since is not None and until is not None and since >= until:
        raise BadDateError(
            f'bad date range: --since "{args.since}" is not before --until "{args.until}"'
        )
    return since, until


def _existing_folder(path: Path, what: str = "folder") -> Path:
    from core.album import AlbumNotFoundError

    folder = path.expanduser().absolute()
    if not folder.is_dir():
        raise AlbumNotFoundError(
            f"{what} not found: {folder}" if not folder.exists() else f"not a folder: {folder}"
        )
    return folder


def _existing_image(value: str) -> None:
    """Refuse an image argument that names no file, before a library or model is opened."""
    from core.search import QueryError

    if not Path(value).expanduser().is_file():
        raise QueryError(f"image not found: {value}")


def _load_model(name: str | None, *, gpu: bool = False, precision: str = "auto") -> ClipModel:
    """Open an installed model (default: the registry's default model), checked.

    Every file of the model is checked against its install-time hash; one whose size, times and
    inode are unchanged since it last matched is not read again, so the check costs a few
    ``stat`` calls, and a file that changed is hashed (with a note that it changed). ``gpu`` asks
    for Vulkan; without a Vulkan GPU a note says so and the model runs on the CPU. A note about
    the ``precision`` chosen (bf16 emulated on this CPU) is printed too.
    """
    from core.encoder import load_model

    model = load_model(name, vulkan=gpu, precision=precision)
    if gpu and not model.vulkan:
        print(f"{PROG}: no Vulkan GPU found; encoding on the CPU", file=sys.stderr)
    if model.precision.note:
        print(f"{PROG}: {model.precision.note}", file=sys.stderr)
    return model


def _require_indexed(library: Library) -> None:
    from core.search import NoCandidatesError

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
    tty = _isatty(sys.stdout)
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
                _print_line(f"  {path}: {' '.join(reason.split())}", tty)
    if summary.remaining:
        print(f"{summary.remaining} photos still pending (outside --since/--until, or cancelled)")


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _inert(text: str) -> str:
    """``text`` with control characters, bidirectional overrides and undecodable bytes escaped.

    A file name can hold an escape sequence that would move the cursor, change colours or set
    the window title; once escaped (``\\x1b``) it is shown, never run.
    """
    return _UNSAFE.sub(_escape, text)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _print_line(text: str, tty: bool) -> None:
    """Print one line on stdout: escaped on a terminal, the exact name through a pipe."""
    if tty:
        print(_inert(text))
        return
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:  # a file name that is not valid UTF-8: write its bytes
        sys.stdout.flush()
        sys.stdout.buffer.write(os.fsencode(text) + b"\n")


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
            f"\n{PROG}: stopping after the current batch (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _ProgressBar:
    """Draws :class:`~core.indexer.IndexProgress` on a stream.

    On a terminal the bar is redrawn in place at most every 0.1 s; otherwise (a log file, a
    pipe) a line is written when a stage begins and then at most every 10 s.
    """

    WIDTH = 24
    TTY_INTERVAL_S = 0.1
    LOG_INTERVAL_S = 10.0

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = _isatty(stream)
        self._lock = threading.Lock()
        self._last = 0.0
        self._stage: str | None = None
        self._state: tuple[str, int, int] | None = None
        self._drawn = False

    def __call__(self, progress: IndexProgress) -> None:
        with self._lock:
            now = time.monotonic()
            state = (progress.stage, progress.done, progress.total)
            finished = progress.total > 0 and progress.done >= progress.total
            interval = self.TTY_INTERVAL_S if self.tty else self.LOG_INTERVAL_S
            due = (
                progress.stage != self._stage
                or (finished and state != self._state)
                or now - self._last >= interval
            )
            if not due:
                return
            self._stage, self._state, self._last = progress.stage, state, now
            line = self._line(progress)
            try:
                if self.tty:
                    self.stream.write(f"\r{line}\x1b[K")
                    self._drawn = True
                else:
                    self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def _line(self, p: IndexProgress) -> str:
        if p.stage == "scanning" or p.total <= 0:
            return f"{p.stage} {p.done} photos found" if p.stage == "scanning" else p.stage
        fraction = min(1.0, p.done / p.total)
        filled = round(fraction * self.WIDTH)
        parts = [
            f"{p.stage:<8} [{'#' * filled}{'-' * (self.WIDTH - filled)}]",
            f"{p.done}/{p.total}",
            f"{fraction:4.0%}",
        ]
        if p.rate_per_s > 0:
            parts.append(f"{p.rate_per_s:.1f} photos/s")
        if p.eta_s is not None:
            minutes, seconds = divmod(round(p.eta_s), 60)
            parts.append(f"ETA {minutes}:{seconds:02d}")
        if p.errors:
            parts.append(f"{p.errors} failed")
        return "  ".join(parts)

    def close(self) -> None:
        """Clear the bar from the terminal."""
        with self._lock:
            if self.tty and self._drawn:
                try:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            self._drawn = False


_COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_model_commands,
    _add_index_commands,
    _add_search_commands,
]


def _model_install(args: argparse.Namespace) -> int:
    from core.install import describe_model, install_model

    if args.name is None and args.from_file is not None and args.as_name is None:
        return _usage(args.parser, "--from FILE without a registry NAME needs --as NEWNAME")
    if args.from_file is None and args.as_name is not None:
        return _usage(args.parser, "--as is only used with --from FILE")
    if args.quick_gelu and args.name is not None:
        return _usage(args.parser, "--quick-gelu is only used with --from FILE --as NEWNAME")
    if args.from_file is not None and not args.from_file.expanduser().exists():
        return _usage(args.parser, f"no such checkpoint file or folder: {args.from_file}")

    def announce(hub_file: HubFile) -> None:
        size = _size(hub_file.size) if hub_file.size is not None else "size unknown"
        print(
            f"{PROG}: downloading {hub_file.filename} ({size}) from {hub_file.url}",
            file=sys.stderr,
            flush=True,
        )

    facts = describe_model(args.name) if args.from_file is None else None
    if facts is not None:
        print(f"{PROG}: installing {_inert(facts)}", file=sys.stderr)

    folder = install_model(
        args.name,
        args.from_file,
        as_name=args.as_name,
        quick_gelu=args.quick_gelu,
        image_precision=args.precision,
        keep_checkpoint=args.keep_checkpoint,
        announce=announce,
    )
    print(f"installed {folder.name} ({_size(_folder_bytes(folder))}) in {folder}")
    return 0


def _model_list(args: argparse.Namespace) -> int:
    from core.install import list_models

    rows = list_models()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    table = [["", "NAME", "INSTALLED", "SIZE", "IMAGE", "DESCRIPTION"]]
    for row in rows:
        if row["problem"]:
            state = "broken"
        else:
            state = "yes" if row["installed"] else "no"
        if row["size"] is not None:
            size = _size(row["size"])
        elif row["download_size"] is not None:
            size = f"~{_size(row['download_size'])} download"
        else:
            size = "-"
        table.append(
            [
                "*" if row["default"] else "",
                row["name"],
                state,
                size,
                f"{row['image_size']}px" if row["image_size"] else "-",
                row["description"] or ("custom" if not row["in_registry"] else ""),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())
    print("\n* default model")
    for row in rows:
        if row["problem"]:
            print(f"{row['name']}: {row['problem']}")
    return 0


def _model_remove(args: argparse.Namespace) -> int:
    from core.install import remove_model

    folder = remove_model(args.name)
    print(f"removed {folder.name} ({folder})")
    return 0


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a command, or else the album folders that open the app."""
    commands = _command_names(parser)
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first in commands or argv[:1] in (["-h"], ["--help"], ["--version"]):
        return parser.parse_args(argv)
    app = argparse.ArgumentParser(prog=PROG, usage=parser.usage, add_help=False)
    app.add_argument("-h", "--help", action="help", help=argparse.SUPPRESS)
    app.add_argument("--version", action="version", version=f"{PROG} {clipsearch_version()}")
    app.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    app.add_argument("--images", choices=IMAGE_MODES, default="auto")
    app.add_argument("--gpu", action="store_true")
    return app.parse_args(argv)


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names.update(action.choices)
    return names


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    _print_error(message)
    return EXIT_USAGE


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {_inert(' '.join(message.split()))}", file=sys.stderr)


def _print_way_round(error: ClipsearchError) -> None:
    """For a failed download: the files to fetch by hand and the command that installs one."""
    urls: tuple[str, ...] = getattr(error, "urls", ())
    route: str | None = getattr(error, "route", None)
    if urls:
        print("  to install without the hub, fetch one of these files by hand:", file=sys.stderr)
        for url in urls:
            print(f"    {_inert(url)}", file=sys.stderr)
    if route:
        lead = "then run" if urls else "to install from a checkpoint file, run"
        print(f"  {lead}: {_inert(route)}", file=sys.stderr)


def _exit_code(exit_: SystemExit) -> int:
    code: Any = exit_.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


class _EngineNotes(logging.Handler):
    """Prints the engine's progress notes (``core.*`` loggers, INFO and up) on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"{PROG}: {record.getMessage()}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            self.handleError(record)


def _folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
