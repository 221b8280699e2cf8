"""cdimlab.utils: atomic writes never leave torn files; seeding is reproducible; device errors are clear."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cdimlab import utils


def test_atomic_write_json_round_trip_and_no_temp_left(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.json"
    utils.atomic_write_json(target, {"a": torch.tensor(1.5), "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # readable like any other file, not mkstemp's 0600


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    utils.atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        utils.atomic_write_json(target, {"v": object()})  # not serialisable: fails before the rename
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_atomic_torch_save_loads_back(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    utils.atomic_torch_save(state, tmp_path / "ck.pt")
    assert torch.equal(torch.load(tmp_path / "ck.pt")["w"], state["w"])


def test_seed_everything_gives_identical_draws() -> None:
    g1 = utils.seed_everything(7)
    a = (torch.rand(3), torch.rand(3, generator=g1))
    g2 = utils.seed_everything(7)
    b = (torch.rand(3), torch.rand(3, generator=g2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_resolve_device() -> None:
    assert utils.resolve_device("cpu") == torch.device("cpu")
    assert utils.resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*no CUDA GPU"):
            utils.resolve_device("cuda")


def test_env_info_has_provenance_fields() -> None:
    info = utils.env_info("cpu")
    for key in ("torch", "device", "device_name", "git_commit", "python"):
        assert key in info
    assert info["torch"] == torch.__version__


def test_default_data_root_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDIMLAB_DATA", str(tmp_path))
    assert utils.default_data_root() == tmp_path
    monkeypatch.delenv("CDIMLAB_DATA")
    assert utils.default_data_root() == utils.REPO_ROOT / "data"


def test_atomic_directory_swaps_in_on_success_and_keeps_old_on_error(tmp_path: Path) -> None:
    dest = tmp_path / "ds"
    with utils.atomic_directory(dest) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (dest / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError, match="boom"):
        with utils.atomic_directory(dest) as tmp:
            (tmp / "a.txt").write_text("half-written")
            raise RuntimeError("boom")
    assert (dest / "a.txt").read_text() == "v1"  # the old folder survives a failed rebuild
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp folder left behind


@pytest.fixture
def umask022():
    """Run the test under umask 022 (the usual default), restoring the caller's umask after."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writers_give_normal_permissions(tmp_path: Path, umask022) -> None:
    dest = tmp_path / "ds"
    with utils.atomic_directory(dest) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("x")
    assert dest.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700: other users can read a prepared dataset
    assert (dest / "sub").stat().st_mode & 0o777 == 0o755
    assert (dest / "sub" / "a.txt").stat().st_mode & 0o777 == 0o644
    for write in (
        lambda p: utils.atomic_write_text(p, "t"),
        lambda p: utils.atomic_write_bytes(p, b"b"),
        lambda p: utils.atomic_torch_save({"w": torch.zeros(2)}, p),
        lambda p: utils.atomic_write_stream(p, lambda fh: fh.write(b"s")),
    ):
        target = tmp_path / "f.out"
        write(target)
        assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    os.umask(0o027)
    assert utils.current_umask() == 0o027 and utils.file_mode() == 0o640 and utils.dir_mode() == 0o750
    with utils.atomic_directory(tmp_path / "ds2"):
        pass
    assert (tmp_path / "ds2").stat().st_mode & 0o777 == 0o750  # the umask is honoured, not forced to 0755


def test_atomic_write_stream_streams_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "s.bin"
    utils.atomic_write_stream(target, lambda fh: [fh.write(b"ab"), fh.write(b"cd")])
    assert target.read_bytes() == b"abcd"

    def half(fh) -> None:
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        utils.atomic_write_stream(target, half)
    assert target.read_bytes() == b"abcd" and sorted(os.listdir(tmp_path)) == ["s.bin"]


def test_atomic_directory_keeps_old_copy_when_the_swap_fails(tmp_path: Path, monkeypatch) -> None:
    """The old folder is renamed aside, never deleted, until the new one sits under the final name."""
    dest = tmp_path / "ds"
    with utils.atomic_directory(dest) as tmp:
        (tmp / "a.txt").write_text("v1")
    real_replace, failed = os.replace, []

    def flaky_replace(src, dst):
        if Path(dst) == dest and not failed:  # the first move onto dest (new folder in) fails
            failed.append(src)
            raise OSError("simulated crash while renaming the new folder in")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated crash"):
        with utils.atomic_directory(dest) as tmp:
            (tmp / "a.txt").write_text("v2")
    assert failed and (dest / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # neither the new nor an aside folder left
    monkeypatch.undo()
    with utils.atomic_directory(dest) as tmp:
        (tmp / "a.txt").write_text("v3")
    assert (dest / "a.txt").read_text() == "v3" and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_staging_folders_and_part_files_of_a_killed_process_are_removed_next_time(tmp_path, capsys):
    """A SIGKILL leaves ``.<name>.pid<N>.*`` siblings (half-extracted staging folders, ``.part`` downloads). The next
    atomic_directory for that name removes those of dead processes, keeps a live process's, and says so."""
    import os
    import subprocess
    import sys

    from cdimlab.utils import atomic_directory, remove_orphans, temp_prefix

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    dest = tmp_path / "market1501"
    orphan_dir = tmp_path / f".market1501.pid{dead_pid}.abc123"
    (orphan_dir / "bounding_box_train").mkdir(parents=True)
    orphan_part = tmp_path / f".market1501.pid{dead_pid}.xyz.part"
    orphan_part.write_bytes(b"half")
    live = tmp_path / f".market1501.pid{os.getpid()}.live"
    live.mkdir()
    other = tmp_path / f".shoes.pid{dead_pid}.keep"  # another name's temp file: not ours to touch
    other.mkdir()
    with atomic_directory(dest) as staging:
        assert staging.name.startswith(temp_prefix(dest))
        (staging / "ok.txt").write_text("x")
    assert not orphan_dir.exists() and not orphan_part.exists()
    assert live.is_dir() and other.is_dir() and (dest / "ok.txt").is_file()
    assert "removed 2 temp file(s)/folder(s) a killed process left" in capsys.readouterr().err
    assert remove_orphans(dest) == []


def test_records_name_the_commit_the_process_started_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run writes its record hours after it loaded the code; HEAD may have moved by then. env_info names
    the commit read once per process (at import), and says whether tracked files were modified then."""
    first = utils.env_info("cpu")
    monkeypatch.setattr(utils, "git_commit", lambda repo=utils.REPO_ROOT: "f" * 40)  # HEAD moves
    later = utils.env_info("cpu")
    assert later["git_commit"] == first["git_commit"] and later["git_dirty"] == first["git_dirty"]
    assert first["git_dirty"] in (True, False, None)
