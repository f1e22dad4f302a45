"""Every numeric option of `flowkit extract` is range-checked: one line, exit 2, nothing written.

Found by a hostile run of the catalogue (issue 15): `--bound nan` and `--bound inf` extracted
with exit 0, `--shard-size 0` was accepted, `--fps inf` and `--fps 1e9` hung.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.synth import Motion


@pytest.mark.parametrize("option, message", [
    (["--bound", "nan"], "--bound must be a positive finite number"),
    (["--bound", "inf"], "--bound must be a positive finite number"),
    (["--bound", "0"], "--bound must be a positive finite number"),
    (["--bound", "-3"], "--bound must be a positive finite number"),
    (["--fps", "inf"], "--fps must be a positive finite number"),
    (["--fps", "nan"], "--fps must be a positive finite number"),
    (["--fps", "1e9"], "--fps must be at most 1000"),
    (["--fps", "0"], "--fps must be a positive finite number"),
    (["--shard-size", "0"], "--shard-size must be at least 1 MB"),
    (["--shard-size", "-5"], "--shard-size must be at least 1 MB"),
    (["-j", "0"], "--jobs must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--task-size", "0"], "--task-size must be at least 1"),
    (["--step", "0"], "--step must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--short-side", "0"], "each side must be 2..16384 pixels"),
    (["--short-side", "1000000"], "each side must be 2..16384 pixels"),
    (["--size", "0x10"], "each side must be 2..16384 pixels"),
    (["--rgb-quality", "101"], "--rgb-quality must be 0..100"),
    (["--flow-quality", "-1"], "--flow-quality must be 0..100"),
    (["--compression", "10"], "--compression must be 0..9"),
    (["--short-side", "64", "--no-resize"], "use only one of --short-side, --size and --no-resize"),
])
def test_out_of_range_options_are_one_line_and_write_nothing(tmp_path, make_video, option, message):
    make_video("a.mkv", Motion(dx=1.0), frames=3)
    out = tmp_path / "out.h5"
    result = CliRunner().invoke(cli, ["extract", str(tmp_path / "videos"), str(out), *option],
                                catch_exceptions=False)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not out.exists() and not (tmp_path / "out.h5.shards").exists()
