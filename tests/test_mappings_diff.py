"""`hub test-mappings` shows what differs as a unified diff of pretty-printed JSON (issue 14), not two 2 KB lines."""

from __future__ import annotations

from click.testing import CliRunner

from hub.cli import main
from hub.goldens import diff
from tests.support import write_config
from tests.test_contextcheck import BRANCH, broken_webhook_mapping, config


def test_a_mismatch_is_a_unified_diff_of_sorted_indented_json(tmp_path):
    broken_webhook_mapping(tmp_path, BRANCH.replace('"changes"', '"extra": 1, "changes"'))
    write_config(tmp_path / "hub.yaml", config(tmp_path, mapping="mymap"))
    result = CliRunner().invoke(main, ["test-mappings", "--config", str(tmp_path / "hub.yaml"), "--type", "webhook"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    start = lines.index("  created.body: differs from created.body.json:")
    assert lines[start + 1:start + 3] == ["  --- created.body.json (expected)", "  +++ rendered"]
    end = next((i for i in range(start + 1, len(lines)) if "differs from" in lines[i]), len(lines))
    changed = [line for line in lines[start + 3:end] if line.startswith(("  +", "  -"))]
    assert changed == ['  +  "extra": 1,']  # the one field, on its own line, with 2-space indent and sorted keys
    assert max(len(line) for line in lines) < 300


def test_diff_of_json_and_of_text():
    out = diff({"b": [1, 2], "a": "x"}, {"a": "y", "b": [1, 2]}, "case.body.json").splitlines()
    assert out[2] == "@@ -1,5 +1,5 @@" and '-  "a": "x",' in out and '+  "a": "y",' in out
    assert diff("one\ntwo", "one\nthree", "case.text.txt").splitlines()[-2:] == ["-two", "+three"]
    assert diff({"a": 1}, {"a": 1}, "same.json") == ""
