"""Image inputs named on the command line: files, folders, globs, list files, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from hashcli.data.inputs import UNKNOWN_LABEL, expand_image_inputs, records_for_paths
from hashcli.errors import HashretError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), (10, 20, 30)).save(path)
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """photos/{b.png, a.jpg, sub/c.PNG, .hidden.png, .cache/d.png, notes.txt}; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name in ("photos/b.png", "photos/a.jpg", "photos/sub/c.PNG"):
        _image(tmp_path / name)
    _image(tmp_path / "photos/.hidden.png")
    _image(tmp_path / "photos/.cache/d.png")
    (tmp_path / "photos/notes.txt").write_text("not an image")
    return tmp_path


def test_folder_is_searched_recursively_sorted_without_hidden_or_other_files(tree):
    assert expand_image_inputs(["photos"]) == [
        Path("photos/a.jpg"),
        Path("photos/b.png"),
        Path("photos/sub/c.PNG"),
    ]


def test_files_keep_the_order_given_and_any_extension(tree):
    found = expand_image_inputs(["photos/b.png", "photos/notes.txt", "photos/a.jpg"])
    assert found == [Path("photos/b.png"), Path("photos/notes.txt"), Path("photos/a.jpg")]


def test_glob_matches_image_files_sorted(tree):
    assert expand_image_inputs(["photos/*"]) == [Path("photos/a.jpg"), Path("photos/b.png")]
    assert expand_image_inputs(["photos/**/*.png"]) == [Path("photos/b.png")]
    assert expand_image_inputs(["photos/**/*.[pP][nN][gG]"]) == [
        Path("photos/b.png"),
        Path("photos/sub/c.PNG"),
    ]


def test_duplicates_are_dropped_keeping_the_first_spelling(tree):
    found = expand_image_inputs(
        ["photos/b.png", "./photos/b.png", "photos/sub/../b.png", "photos", str(tree / "photos")]
    )
    assert found == [Path("photos/b.png"), Path("photos/a.jpg"), Path("photos/sub/c.PNG")]


def test_list_file_entries_are_relative_to_the_list_and_follow_the_arguments(tree):
    listing = tree / "lists" / "mine.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# my images\n\n../photos/sub/c.PNG\n  ../photos/b.png  \n"
        f"{tree / 'photos' / 'a.jpg'}\n../photos/*.png\n"
    )
    found = expand_image_inputs(["photos/a.jpg"], listing)
    assert [p.resolve() for p in found] == [
        (tree / "photos/a.jpg").resolve(),
        (tree / "photos/sub/c.PNG").resolve(),
        (tree / "photos/b.png").resolve(),
    ]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "no images given"),
        (["missing.png"], "missing.png does not exist"),
        (["photos/*.gif"], "matches no images"),
        (["empty"], "holds no images"),
    ],
)
def test_nothing_matched_is_an_error(tree, inputs, message):
    (tree / "empty").mkdir()
    with pytest.raises(HashretError, match=message):
        expand_image_inputs(inputs)


def test_empty_or_missing_list_file_is_an_error(tree):
    empty = tree / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(HashretError, match="names no images"):
        expand_image_inputs([], empty)
    with pytest.raises(HashretError, match="does not exist"):
        expand_image_inputs([], tree / "nope.txt")


def test_records_for_paths_have_unknown_labels():
    records = records_for_paths([Path("a.png"), Path("b.png")])
    assert [r.path for r in records] == [Path("a.png"), Path("b.png")]
    assert {r.label for r in records} == {UNKNOWN_LABEL}
