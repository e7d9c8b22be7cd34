import json

import pytest

from tokenbridge.files import atomic_write, write_json


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")

    def fails(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary file left behind
    atomic_write(path, lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new"


def test_write_json_writes_whole_json_into_a_new_folder(tmp_path):
    path = write_json(tmp_path / "new" / "result.json", {"a": [1, 2]}, indent=2)
    assert json.loads(path.read_text()) == {"a": [1, 2]} and path.read_text().endswith("]\n}\n")
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    assert json.loads(path.read_text()) == {"a": [1, 2]}, "a failed write keeps the old file"
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]
