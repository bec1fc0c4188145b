"""Tests of clop.util.io (crash-safe file output) and of clop.util.cli's run_main: the docstring examples,
empty paths refused, a full disk or a file-size limit reported in one line with the old file intact, and the
temporaries of killed runs cleaned without touching anything else."""

from __future__ import annotations

import doctest
import subprocess
import sys
import textwrap

import pytest

import clop.util.io as io_module
from clop.util.cli import run_main
from clop.util.io import (
    WriteFailedError,
    atomic_path,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    remove_stale_temporaries,
    staged_outputs,
)
from tests.helpers import REPO


def test_doctests():
    result = doctest.testmod(io_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("check", [check_output_dir, check_output_file])
@pytest.mark.parametrize("value", ["", "   "])
def test_empty_paths_are_refused(check, value):
    with pytest.raises(ValueError, match="--x must not be empty"):
        check(value, "--x")


def test_a_write_that_fails_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = atomic_write_text(tmp_path / "t.csv", "old")
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(WriteFailedError, match="t.csv.*previous file, if any, is intact") as info:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise AttributeError("'Stream' object has no attribute 'pos'")  # what matplotlib raised on a full disk
    assert isinstance(info.value.__cause__, AttributeError)
    with pytest.raises(WriteFailedError):
        with staged_outputs(tmp_path) as stage:
            stage("t.csv").write_text("partial")
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos")  # torch's
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unrelated"):  # with space left, an error is what it is
        with atomic_path(target):
            raise RuntimeError("unrelated")


def test_run_main_turns_a_file_size_limit_and_ctrl_c_into_one_line(tmp_path):
    """A real file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored so that write() fails with EFBIG) in a child."""
    child = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from clop.util.cli import run_main
        from clop.util.io import atomic_write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        atomic_write_text({str(tmp_path / "big.txt")!r}, "old")
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        sys.exit(run_main(lambda argv: atomic_write_text({str(tmp_path / "big.txt")!r}, "x" * 100000) and 0))
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "big.txt" in lines[0] and "File too large" in lines[0], out.stderr
    assert (tmp_path / "big.txt").read_text() == "old"

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(interrupted) == 130
    assert run_main(lambda argv: 3) == 3 and run_main(lambda argv: None) == 0


def test_stale_temporaries_of_our_naming_are_removed_and_nothing_else(tmp_path):
    keep = ["figure3.png", ".figure3.png", ".figure3.abc.tmp.png", "notes.tmp.csv", ".table5.abcdefgh.tmp.png"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    stale = [io_module._temp_for(tmp_path / "figure3.png"), io_module._temp_for(tmp_path / "table5.csv")]
    removed = remove_stale_temporaries(tmp_path, ["figure3.png", "table5.csv"])
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_staged_outputs_name_the_file_that_hit_the_size_limit(tmp_path):
    """Of several staged files, the error names the one that reached the limit, with the right reason."""
    child = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from clop.util.cli import run_main
        from clop.util.io import staged_outputs
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        def main(argv):
            with staged_outputs({str(tmp_path)!r}) as stage:
                stage("small.csv").write_text("a,b\\n1,2\\n")
                with open(stage("big.png"), "wb") as f:
                    f.write(b"x" * 5000)
        sys.exit(run_main(main))
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "big.png" in line and "File too large" in line and "small.csv" not in line, line
    assert list(tmp_path.iterdir()) == []
