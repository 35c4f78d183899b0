"""The local CodeCommit source: a working tree zipped like a commit of it, named by its content."""
from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path

from mlops_local.codepipeline.actions import codecommit


def tree(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a = 1\n")
    (root / "README.md").write_text("readme\n")
    (root / "runs").mkdir()
    (root / "runs" / "out.json").write_text("{}")  # excluded, as a commit would not hold it
    return root


def test_the_zip_holds_the_tree_and_its_hash_follows_the_content(tmp_path):
    folder = tree(tmp_path / "repo")
    body, commit = codecommit.zip_folder(folder)
    assert sorted(zipfile.ZipFile(io.BytesIO(body)).namelist()) == ["README.md", "src/a.py"]
    assert codecommit.zip_folder(folder) == (body, commit)  # unchanged: the same zip, the same id
    (folder / "src" / "a.py").write_text("a = 2\n")
    changed_body, changed = codecommit.zip_folder(folder)
    assert changed != commit
    assert zipfile.ZipFile(io.BytesIO(changed_body)).read("src/a.py") == b"a = 2\n"


def test_a_change_that_keeps_size_and_mtime_is_still_seen_when_mtime_moves(tmp_path):
    folder = tree(tmp_path / "repo")
    _, commit = codecommit.zip_folder(folder)
    target = folder / "src" / "a.py"
    stat = target.stat()
    target.write_text("b = 1\n")  # same size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert codecommit.zip_folder(folder)[1] != commit


def test_sources_zipped_at_once_zip_the_tree_once(tmp_path, monkeypatch):
    folder = tree(tmp_path / "repo")
    calls = []
    real = codecommit._zip
    monkeypatch.setattr(codecommit, "_zip", lambda f, names: calls.append(f) or real(f, names))
    results = []
    threads = [threading.Thread(target=lambda: results.append(codecommit.zip_folder(folder))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1
