"""The command line as a user meets it: commands, messages and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from broadsheet.cli import main
from broadsheet.diagnostics import Diagnostic
from broadsheet.scaffold import create_site

from .conftest import REPO, SITE_YAML, refuse_to_list, story


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "build.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_build_py_alone_builds_the_site_in_the_current_folder(make_site) -> None:
    site = make_site({"content/a.md": story()})
    result = run(cwd=site.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Built 1 story, 0 topics and 1 issue into output/:")
    assert "Traceback" not in result.stderr
    assert (site.output / "stories/a/index.html").is_file()


def test_quiet_prints_nothing_on_success(make_site, capsys) -> None:
    site = make_site({"content/a.md": story(extra="unknown_field: 1")})
    assert main(["build", "--site", str(site.root), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_warnings_are_shown_but_do_not_fail(make_site, capsys) -> None:
    site = make_site({"content/a.md": story(extra="titel: typo")})
    assert main(["--site", str(site.root), "-q"]) == 0  # no command: build
    assert capsys.readouterr().err == ""
    assert main(["build", "--site", str(site.root)]) == 0
    err = capsys.readouterr().err
    assert "content/a.md:5: warning: titel: unknown field, ignored; did you mean 'title'?" in err


def test_build_fails_with_exit_code_1_and_every_diagnostic(make_site, capsys) -> None:
    site = make_site(
        {"content/a.md": story(url="ftp://x.example.com"), "content/b.md": "no front matter\n"}
    )
    assert main(["build", "--site", str(site.root)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "content/a.md:4: webUrl: expected an http(s) URL, got 'ftp://x.example.com' (only http "
        "and https links are allowed)",
        "content/b.md:1: missing front matter: a story must start with a '---' line, then YAML "
        "fields, then another '---' line",
        "Build failed: 2 errors in 2 files; nothing was written, the previous output is unchanged.",
    ]


def test_a_refused_option_is_not_counted_as_a_file(make_site, capsys) -> None:
    """`build --output content` is refused: its summary said "1 error in 1 file", the
    option counted as a file."""
    site = make_site({"content/a.md": story()})
    assert main(["build", "--site", str(site.root), "--output", "content"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("--output: ")
    assert err[1:] == [
        "Build failed: 1 error; nothing was written, the previous output is unchanged."
    ]


def test_an_output_folder_that_cannot_be_written_is_not_counted_as_a_file(
    make_site, capsys
) -> None:
    """A file where the output folder's parent should be: the error names the folder, and
    the summary said "1 error in 1 file", the folder counted as a file."""
    site = make_site({"content/a.md": story(), "blocker": "a file in the way\n"},
                     site_yaml=SITE_YAML + "output_dir: blocker/out\n")
    assert main(["build", "--site", str(site.root), "--offline"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("blocker/out: output_dir: cannot prepare ")
    assert err[1:] == [
        "Build failed: 1 error; nothing was written, the previous output is unchanged."
    ]


def test_errors_in_files_and_in_options_are_counted_apart() -> None:
    from broadsheet.cli import count_errors
    from broadsheet.diagnostics import Subject

    option = Diagnostic("--output", 0, "", "would replace content on every build",
                        subject=Subject.OPTION)
    story_error = Diagnostic("content/a.md", 4, "webUrl", "expected an http(s) URL")
    assert count_errors([option, story_error, story_error]) == "3 errors, 2 of them in 1 file"
    assert count_errors([story_error]) == "1 error in 1 file"


def test_a_folder_that_cannot_be_listed_is_not_counted_as_a_file(
    make_site, monkeypatch, capsys
) -> None:
    site = make_site({"content/good.md": story(), "content/locked/inner.md": story(),
                      "content/bad.md": story(url="ftp://x.example.com")})
    refuse_to_list(monkeypatch, "locked")
    assert main(["check", "--site", str(site.root), "--offline"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "content/locked: cannot be read: Permission denied" in err
    assert err[-1] == ("Check failed: 2 errors, 1 of them in 1 file; nothing was written, "
                       "the previous output is unchanged.")


def test_keep_going_exits_0_with_warnings(make_site, capsys) -> None:
    site = make_site({"content/a.md": story(), "content/b.md": "no front matter\n"})
    assert main(["build", "--site", str(site.root), "--keep-going"]) == 0
    captured = capsys.readouterr()
    assert "content/b.md:1: warning: missing front matter" in captured.err
    assert captured.out.startswith("Built 1 story")


def test_check_validates_without_writing(make_site, capsys) -> None:
    site = make_site({"content/a.md": story()})
    assert main(["check", "--site", str(site.root)]) == 0
    assert "No errors in 1 story" in capsys.readouterr().out
    assert not site.output.exists()
    site.write("content/b.md", story(url="javascript:alert(1)"))
    assert main(["check", "--site", str(site.root)]) == 1
    assert "Check failed: 1 error in 1 file" in capsys.readouterr().err
    assert not site.output.exists()


def test_not_a_site_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["build", "--site", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no site.yaml here" in err and "broadsheet new" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run("build", "--no-such-option", cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_new_creates_a_site_that_builds(tmp_path: Path, capsys) -> None:
    target = tmp_path / "digest"
    assert main(["new", str(target)]) == 0
    assert main(["build", "--site", str(target), "-q"]) == 0
    assert (target / "output/stories/welcome/index.html").is_file()
    assert (target / "output/issues/1/index.html").is_file()
    assert main(["new", str(target)]) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["new", str(target / "site.yaml")]) == 1  # a file: said so, not "not empty"
    assert "site.yaml is a file, not a folder; choose another name" in capsys.readouterr().err


def test_new_refuses_a_folder_name_too_long_for_the_file_system(tmp_path: Path,
                                                                capsys) -> None:
    target = tmp_path / ("x" * 300)
    assert main(["new", str(target)]) == 1
    assert f"broadsheet new: cannot use {target}: File name too long" in capsys.readouterr().err


def test_new_site_issue_epoch_is_this_weeks_monday(tmp_path: Path) -> None:
    create_site(tmp_path / "s", today=date(2026, 11, 27))
    assert "epoch: 2026-11-23" in (tmp_path / "s" / "site.yaml").read_text()


def test_the_sample_site_builds_with_the_console_script_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broadsheet", "check", "--offline", "--site", str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No errors in 34 stories")


def test_a_reader_that_stops_early_gets_no_traceback(make_site) -> None:
    """`broadsheet build --explain | head -1`: the pipe is closed when the report prints."""
    site = make_site({"content/a.md": story()})
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is printed
    try:
        writer = subprocess.run(
            [sys.executable, str(REPO / "build.py"), "--explain"], cwd=site.root,
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in writer.stderr, writer.stderr
    assert writer.returncode == 1
    assert (site.output / "stories/a/index.html").is_file()
