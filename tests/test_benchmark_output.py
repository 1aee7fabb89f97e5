"""The benchmarks' --out folder: made when missing, refused with one line (not a traceback after
minutes of measuring) where a file stands in its place."""
import pytest

from benchmarks.timing import output_folder, write_json


def test_the_folder_is_made_and_a_file_in_its_place_is_refused(tmp_path):
    made = output_folder(tmp_path / "a" / "b")
    assert made.is_dir()
    assert write_json({"x": 1}, made, "run").read_text().strip().startswith("{")
    (tmp_path / "taken").write_text("the user's file")
    with pytest.raises(SystemExit, match=r"--out=.*taken: cannot write results there"):
        output_folder(tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "the user's file"
