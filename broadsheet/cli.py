"""The command line: the only place that prints, reads the terminal or chooses an exit code.

Exit codes: 0 success, 1 the site has errors (nothing was written), 2 wrong usage,
130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TextIO

from . import __version__
from .diagnostics import BuildFailed, Diagnostic
from .pipeline import BuildOptions, BuildReport, build

COMMANDS = ("build", "check", "new", "serve", "import")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run() -> NoReturn:
    """The entry point of the `broadsheet` command, `python -m broadsheet` and build.py:
    main(), then exit at once. A build leaves a large model in memory; letting the
    interpreter free it object by object took seconds on a 10,000-story site, for nothing.
    Everything is written and closed by then; the output streams are flushed here."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`... | head -1`)
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        command: Callable[[argparse.Namespace], int] = args.run
        return command(args)
    except BuildFailed as failure:
        show_failure(failure, sys.stderr, "Check" if args.command == "check" else "Build")
        return failure.exit_code
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`broadsheet build --explain | head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to say, and no traceback
        return EXIT_FAILED


def parse_args(argv: list[str]) -> argparse.Namespace:
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["build", *argv]  # `broadsheet` and `python build.py` alone build the site
    parser = argparse.ArgumentParser(
        prog="broadsheet", description="Build a curated tech news digest from Markdown stories."
    )
    parser.add_argument("--version", action="version", version=f"broadsheet {__version__}")
    site = argparse.ArgumentParser(add_help=False)
    site.add_argument(
        "--site",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="the site folder, holding site.yaml (default: the current folder)",
    )
    site.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only errors: no progress, warnings or summary",
    )
    content = argparse.ArgumentParser(add_help=False)
    content.add_argument(
        "--drafts", action="store_true", help="include stories marked 'published: false'"
    )
    content.add_argument(
        "--offline",
        action="store_true",
        help="download no images: use only what the image cache holds (placeholders for the rest)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    build_cmd = commands.add_parser(
        "build", parents=[site, content], help="build the site into output/ (the default command)"
    )
    build_cmd.add_argument(
        "--keep-going",
        action="store_true",
        help="skip broken stories (reported as warnings) and build the rest",
    )
    build_cmd.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="build into DIR instead of site.yaml's output_dir (relative to the site folder)",
    )
    build_cmd.add_argument(
        "--explain",
        action="store_true",
        help="say why each page, feed and email was rendered again (or that nothing changed)",
    )
    build_cmd.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="ignore the build cache in .cache/build and build everything from scratch",
    )
    build_cmd.set_defaults(run=run_build)

    check_cmd = commands.add_parser(
        "check",
        parents=[site, content],
        help="validate content, config and templates; write nothing",
    )
    check_cmd.set_defaults(run=run_check)
    for command in (build_cmd, check_cmd):
        command.add_argument(
            "--refetch",
            action="store_true",
            help="download again the images that failed before (failures are cached)",
        )

    new_cmd = commands.add_parser("new", help="create a new site folder to start from")
    new_cmd.add_argument("directory", type=Path, metavar="DIR")
    new_cmd.set_defaults(run=run_new)

    serve_cmd = commands.add_parser(
        "serve", parents=[site, content], help="preview the site locally, rebuilding on every edit"
    )
    serve_cmd.add_argument("--port", type=port_number, default=8000)
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--open", action="store_true", help="open the site in a browser")
    serve_cmd.set_defaults(run=run_serve)

    import_cmd = commands.add_parser(
        "import", parents=[site], help="add the new items of outlets' feeds as draft stories")
    import_cmd.add_argument("sources", nargs="+", metavar="SOURCE",
                            help="an RSS, Atom or JSON Feed URL or file, or an OPML file")
    import_cmd.add_argument("--dry-run", action="store_true",
                            help="print what would be created, folded and skipped; write nothing")
    import_cmd.set_defaults(run=run_import)
    return parser.parse_args(argv)


# -- commands -----------------------------------------------------------------------------


def run_build(args: argparse.Namespace) -> int:
    options = BuildOptions(
        drafts=args.drafts,
        keep_going=args.keep_going,
        output_dir=args.output,
        offline=args.offline,
        refetch=args.refetch,
        use_cache=args.use_cache,
    )
    progress = None if args.quiet else ProgressLine(sys.stderr)
    report = build(args.site, options, progress)
    if progress:
        progress.clear()
    if args.explain:
        print(explanation(report), file=sys.stdout)
    if not args.quiet:
        show_warnings(report.warnings, sys.stderr)
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        print(summary(report, args.site), file=sys.stdout)
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    options = BuildOptions(drafts=args.drafts, offline=args.offline, refetch=args.refetch)
    report = build(args.site, options, write=False)
    if not args.quiet:
        show_warnings(report.warnings, sys.stderr)
        print(
            f"No errors in {plural(report.counts.stories, 'story', 'stories')}, "
            f"{plural(report.pages, 'page')} checked."
        )
    return EXIT_OK


def run_new(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, create_site

    try:
        created = create_site(args.directory)
    except ScaffoldError as exc:
        print(f"broadsheet new: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Created a new site in {created}. Next:\n  cd {created}\n  broadsheet build")
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from .config import load_config
    from .importer import import_sources

    config = load_config(args.site)
    progress = None if args.quiet else ProgressLine(sys.stderr)
    report = import_sources(config, args.sources, dry_run=args.dry_run, progress=progress)
    if progress:
        progress.clear()
    colour = use_colour(sys.stderr)
    for failure in report.failed:
        print(paint(f"error: {failure}", "31", colour), file=sys.stderr)
    if not args.quiet:
        for warning in report.warnings:
            print(paint(f"warning: {warning}", "33", colour), file=sys.stderr)
        for action in report.actions:
            print(action)
        verb = "Would import" if args.dry_run else "Imported"
        print(f"{verb} from {plural(report.sources, 'feed')}: {report.count('create')} created, "
              f"{report.count('fold')} folded, {report.count('skip')} skipped, "
              f"{len(report.failed)} failed.")
    return EXIT_FAILED if report.failed else EXIT_OK


def port_number(text: str) -> int:
    """A TCP port for `--port`: out of range is a usage error, not a traceback from bind()."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be 0-65535")
    return port


def run_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    exit_code: int = serve(args)
    return exit_code


# -- showing results ----------------------------------------------------------------------


def summary(report: BuildReport, site_dir: Path) -> str:
    counts = report.counts
    draft_note = f" (including {plural(counts.drafts, 'draft')})" if counts.drafts else ""
    output = report.config.output_dir
    if report.nothing_changed:
        return (f"Nothing changed since the last build: {output}/ is up to date "
                f"({plural(counts.stories, 'story', 'stories')}, "
                f"{plural(report.pages, 'page')}) ({report.seconds:.2f} s)")
    rendered = len(report.rebuilt)
    return (
        f"Built {plural(counts.stories, 'story', 'stories')}{draft_note}, "
        f"{plural(counts.topics, 'topic')} and {plural(counts.issues, 'issue')} "
        f"into {output}/: {plural(report.pages, 'page')}, {plural(report.files, 'file')} "
        f"({report.unchanged} unchanged; {rendered} rendered, "
        f"{report.reparsed} {'story' if report.reparsed == 1 else 'stories'} read) "
        f"in {report.seconds:.2f} s"
    )


def explanation(report: BuildReport) -> str:
    """--explain: what was rendered again and why, one line each."""
    if report.nothing_changed:
        return "Nothing changed: every input is as the last build left it; nothing rendered."
    lines = [f"Read {plural(report.reparsed, 'story file')} (the rest came from the cache)."]
    for unit, reason in report.rebuilt:
        lines.append(f"  {unit}: {reason}")
    for name in report.removed:
        lines.append(f"  removed {name}: no longer part of the site")
    if not report.rebuilt:
        lines.append("No page, feed or email changed.")
    return "\n".join(lines)


def show_failure(failure: BuildFailed, stream: TextIO, label: str) -> None:
    colour = use_colour(stream)
    if stream.isatty():
        stream.write("\r\033[K")  # clear a progress line the failure interrupted
    for diagnostic in failure.diagnostics:
        print(format_diagnostic(diagnostic, colour), file=stream)
    errors = [d for d in failure.diagnostics if d.is_error]
    print(
        paint(
            f"{label} failed: {count_errors(errors)}; "
            "nothing was written, the previous output is unchanged.",
            "31",
            colour,
        ),
        file=stream,
    )


def count_errors(errors: list[Diagnostic]) -> str:
    """How many errors in how many files, like "2 errors in 2 files". Errors not in a file
    (an option's, like `--output content`) are not counted as files: that said "in 1 file"."""
    in_files = [d for d in errors if d.in_a_file]
    files = plural(len({d.path for d in in_files}), "file")
    if len(in_files) == len(errors):
        return f"{plural(len(errors), 'error')} in {files}"
    if not in_files:
        return plural(len(errors), "error")
    return f"{plural(len(errors), 'error')}, {len(in_files)} of them in {files}"


def show_warnings(warnings: list[Diagnostic], stream: TextIO) -> None:
    colour = use_colour(stream)
    for diagnostic in sorted(warnings):
        print(format_diagnostic(diagnostic, colour), file=stream)


def format_diagnostic(diagnostic: Diagnostic, colour: bool) -> str:
    return paint(str(diagnostic), "31" if diagnostic.is_error else "33", colour)


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def plural(count: int, singular: str, many: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (many or singular + 's')}"


class ProgressLine:
    """A single self-overwriting status line, only on a terminal, at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.active = stream.isatty()
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.active or (now - self.last < 0.1 and done != total):
            return
        self.last = now
        width = 24
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r\033[K{stage:<16} [{bar}] {done}/{total}")
        self.stream.flush()

    def clear(self) -> None:
        if self.active:
            self.stream.write("\r\033[K")
            self.stream.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
