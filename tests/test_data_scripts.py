"""data_scripts/: downloads against a loopback HTTP server (success, resume, truncation, corruption, 404),
prepare_reid checks (counts, digests, atomic destination) and make_synthetic."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from cdimlab.data.reid import load_reid
from cdimlab.data.synthetic import synthetic_reid, synthetic_sbir

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SMALL_REAL = [
    "shoes/shoes_train_triplets.mat",
    "shoes/shoes_sketch_db_test.mat",
    "chairs/chairs_sketch_db_test.mat",
]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"ds_{name}", REPO / "data_scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


dl = _script("download_qmul_v1")
prep = _script("prepare_reid")


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    modes: dict[str, str]
    hits: list[str]

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        self.hits.append(rel)
        path = self.root / rel
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        mode = self.modes.get(rel, "")
        if mode == "flaky":  # bad once, then fine
            self.modes[rel] = ""
            mode = "corrupt"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "corrupt":
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        self.wfile.write(data)


@pytest.fixture
def server(tmp_path):
    """Serve a tmp folder holding a few small QMUL files (real copies when ../shared exists, else synthetic)."""
    served = tmp_path / "served"
    if (SHARED / "qmul_v1").is_dir():
        for rel in SMALL_REAL:
            (served / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SHARED / "qmul_v1" / rel, served / rel)
        table = {rel: dl.file_table(["shoes", "chairs"], False)[rel] for rel in SMALL_REAL}
    else:
        synthetic_sbir(served, "shoes", 6, 4)
        files = sorted(p.relative_to(served).as_posix() for p in served.rglob("*.mat"))[:3]
        table = {
            r: dl.Expected("sha256", hashlib.sha256((served / r).read_bytes()).hexdigest()) for r in files
        }
    handler = type("H", (_Handler,), {"root": served, "modes": {}, "hits": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler, table, served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> set[tuple[str, int]]:
    """{("d" | "f", permission bits)} of ``root`` and everything below it."""
    return {("d" if p.is_dir() else "f", p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}


def _leftovers(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.endswith(".part")]


def test_download_success_then_resume(server, tmp_path):
    url, handler, table, served = server
    dest = tmp_path / "dest"
    status = dl.download(dest, ["shoes", "chairs"], url, table=table, backoff=0, progress=False)
    assert set(status.values()) == {"downloaded"} and len(handler.hits) == len(table)
    for rel in table:
        assert (dest / rel).read_bytes() == (served / rel).read_bytes()
    again = dl.download(dest, ["shoes", "chairs"], url, table=table, backoff=0, progress=False)
    assert set(again.values()) == {"skipped"} and len(handler.hits) == len(table)  # nothing fetched again


@pytest.mark.parametrize("mode", ["truncate", "corrupt"])
def test_bad_response_never_lands_under_final_name(server, tmp_path, mode):
    url, handler, table, _ = server
    rel = sorted(table)[0]
    handler.modes[rel] = mode
    dest = tmp_path / "dest"
    with pytest.raises(dl.DownloadError) as err:
        dl.download(dest, ["shoes", "chairs"], url, table=table, retries=2, backoff=0, progress=False)
    msg = str(err.value)
    assert Path(rel).name in msg and "run the script again" in msg
    assert ("truncated" in msg) if mode == "truncate" else ("checksum mismatch" in msg)
    assert not (dest / rel).exists() and not _leftovers(dest)
    assert handler.hits.count(rel) == 2  # retried
    assert all((dest / r).is_file() for r in table if r != rel)  # the other files still arrive


def test_flaky_file_recovers_with_retry(server, tmp_path):
    url, handler, table, _ = server
    rel = sorted(table)[-1]
    handler.modes[rel] = "flaky"
    status = dl.download(
        tmp_path / "d", ["shoes", "chairs"], url, table=table, retries=3, backoff=0, progress=False
    )
    assert status[rel] == "downloaded" and handler.hits.count(rel) == 2


def test_missing_file_404_not_retried_and_bad_old_file_removed(server, tmp_path):
    url, handler, table, _ = server
    table = dict(table)
    missing = "shoes/shoes_not_there.mat"
    table[missing] = dl.Expected("sha256", "0" * 64)
    dest = tmp_path / "dest"
    (dest / "shoes").mkdir(parents=True)
    (dest / missing).write_bytes(b"stale partial file")
    with pytest.raises(dl.DownloadError, match=r"shoes_not_there\.mat.*HTTP 404"):
        dl.download(dest, ["shoes", "chairs"], url, table=table, retries=3, backoff=0, progress=False)
    assert handler.hits.count(missing) == 1 and not (dest / missing).exists()


def test_cli_checksum_file_and_error_exit(server, tmp_path, capsys):
    url, handler, table, _ = server
    sums = tmp_path / "SUMS"
    sums.write_text(
        "".join(f"{e.hexdigest}  {rel}\n" for rel, e in table.items()) + f"{'1' * 64}  shoes/nope.mat\n"
    )
    rc = dl.main(["--dest", str(tmp_path / "d"), "--base-url", url, "--checksums", str(sums), "--categories", "shoes",
                  "chairs", "--backoff", "0", "--retries", "1", "--no-progress"])  # fmt: skip
    assert rc == 1 and "nope.mat" in capsys.readouterr().err
    assert all((tmp_path / "d" / rel).is_file() for rel in table)


def test_downloads_get_normal_permissions(server, tmp_path, umask022):
    url, _, table, _ = server
    dest = tmp_path / "dest"
    dl.download(dest, ["shoes", "chairs"], url, table=table, backoff=0, progress=False)
    assert _modes(dest) == {("d", 0o755), ("f", 0o644)}  # not mkstemp's 0600: every learner can read them


@pytest.mark.parametrize(
    "entry", ["../x.mat", "shoes/../../x.mat", "/tmp/x.mat", "shoes\\..\\..\\x.mat", "./shoes/x"]
)
def test_checksum_entries_outside_dest_are_refused_before_any_download(server, tmp_path, capsys, entry):
    url, handler, table, _ = server
    sums = tmp_path / "SUMS"
    sums.write_text("".join(f"{e.hexdigest}  {rel}\n" for rel, e in table.items()) + f"{'1' * 64}  {entry}\n")
    with pytest.raises(
        dl.DownloadError, match=rf"SUMS:{len(table) + 1}: .*outside --dest(.|\n)*{re.escape(repr(entry))}"
    ):
        dl.parse_checksum_file(sums)
    rc = dl.main(["--dest", str(tmp_path / "d"), "--base-url", url, "--checksums", str(sums), "--categories", "shoes",
                  "chairs", "--backoff", "0", "--retries", "1", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "outside --dest" in err and "nothing was downloaded" in err
    assert handler.hits == [] and not (tmp_path / "d").exists()
    with pytest.raises(dl.DownloadError, match="outside --dest"):  # a table passed in code is checked as well
        dl.download(tmp_path / "d", ["shoes"], url, table={**table, entry: dl.Expected("sha256", "1" * 64)},
                    backoff=0, progress=False)  # fmt: skip
    assert handler.hits == []


def test_malformed_checksum_line_names_file_and_line(tmp_path):
    sums = tmp_path / "SUMS"
    sums.write_text(f"{'a' * 64}  shoes/a.mat\nnot-a-digest\n")
    with pytest.raises(dl.DownloadError, match=r"SUMS:2: expected '<sha256"):
        dl.parse_checksum_file(sums)


def test_embedded_tables_match_shared_and_git_blob_formula():
    files = dl.file_table(list(dl.CATEGORIES), with_images=True)
    assert files["shoes/shoes_image_db_train.mat"].algo == "git-blob-sha1"
    assert files["shoes/shoes_edge_db_test.mat"].algo == "sha256"
    assert "shoes/shoes_image_db_train.mat" not in dl.file_table(["shoes"], with_images=False)
    if not (SHARED / "qmul_v1").is_dir():
        pytest.skip("../shared/data absent")
    sums = dl.parse_checksum_file(SHARED / "qmul_v1" / "SHA256SUMS")
    assert {k: v.hexdigest for k, v in sums.items()} == dl.SHA256
    blobs = dl.parse_checksum_file(SHARED / "qmul_v1" / "GIT_BLOB_SHA1")
    assert {k: v.hexdigest for k, v in blobs.items()} == dl.GIT_BLOB_SHA1
    path = SHARED / "qmul_v1" / "shoes" / "shoes_train_triplets.mat"
    assert dl.digest_file(path, "git-blob-sha1") == dl.GIT_BLOB_SHA1["shoes/shoes_train_triplets.mat"]


# ------------------------------------------------------------------------------------------ prepare_reid
def _sha256sum_digest(folder: Path) -> str:
    """What `cd folder && sha256sum -- $(LC_ALL=C ls | grep -v Thumbs.db) | sha256sum` computes."""
    names = sorted((p.name for p in folder.iterdir() if p.name != "Thumbs.db"), key=lambda n: n.encode())
    text = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def small_market(tmp_path_factory):
    out = tmp_path_factory.mktemp("mk")
    folder = synthetic_reid(out, n_train_ids=4, n_test_ids=4, n_cams=3, n_distractors=2, n_junk=2, seed=4)
    (folder / "query" / "Thumbs.db").write_bytes(b"x")
    subs = ("bounding_box_train", "bounding_box_test", "query", "gt_bbox")
    counts = {s: sum(1 for p in (folder / s).iterdir() if p.name != "Thumbs.db") for s in subs}
    digests = {s: _sha256sum_digest(folder / s) for s in subs}
    zpath = out / "market.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(out).as_posix())
    return folder, zpath, counts, digests


def test_prepare_from_zip_and_folder(small_market, tmp_path):
    folder, zpath, counts, digests = small_market
    for src in (zpath, folder.parent):
        dest = tmp_path / src.name / "market1501"
        out = prep.prepare("market1501", src, dest, counts, digests, progress=False)
        assert (
            out == dest
            and (dest / ".prepared.json").is_file()
            and not (dest / "query" / "Thumbs.db").exists()
        )
        d = load_reid("market1501", dest)
        assert len(d.query) == counts["query"] and len(d.gt_bbox) == counts["gt_bbox"]
        assert [p.name for p in dest.parent.iterdir()] == ["market1501"]  # no staging folder left
    with pytest.raises(prep.PrepareError, match="already exists"):
        prep.prepare("market1501", zpath, dest, counts, digests, progress=False)


def test_prepare_wrong_count_and_digest_mismatch(small_market, tmp_path):
    folder, zpath, counts, digests = small_market
    bad_counts = dict(counts, query=counts["query"] + 1)
    with pytest.raises(
        prep.PrepareError, match=rf"query: {counts['query']} files, expected {counts['query'] + 1}"
    ):
        prep.prepare("market1501", zpath, tmp_path / "a", bad_counts, digests, progress=False)
    assert not (tmp_path / "a").exists() and not list(tmp_path.iterdir())
    broken = tmp_path / "broken" / folder.name
    shutil.copytree(folder, broken)
    victim = sorted((broken / "bounding_box_test").iterdir())[3]
    data = bytearray(victim.read_bytes())
    data[50] ^= 0xFF
    victim.write_bytes(bytes(data))
    shutil.rmtree(broken / "gt_bbox")
    problems = prep.check(broken.parent, "market1501", counts, digests)
    assert any(p.startswith("bounding_box_test: content digest") for p in problems)
    assert any("missing folder" in p and "gt_bbox" in p for p in problems)
    assert not any(p.startswith("query") or p.startswith("bounding_box_train") for p in problems)
    rc = prep.main(["market1501", "--src", str(broken.parent), "--dest", str(tmp_path / "b"), "--no-progress",
                    "--counts", _json(tmp_path / "c.json", counts), "--digests", _json(tmp_path / "d.json", digests)])  # fmt: skip
    assert rc == 1 and not (tmp_path / "b").exists()


def _json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.mark.skipif(
    not (SHARED / "reid" / "Market-1501-v15.09.15.zip").is_file(), reason="../shared/data absent"
)
def test_real_market_query_digest():
    zpath = SHARED / "reid" / "Market-1501-v15.09.15.zip"
    assert prep.check(zpath, "market1501", folders=("query",)) == []
    wrong = {"query": "0" * 64}
    assert (
        "query: content digest"
        in prep.check(zpath, "market1501", {"query": 3368}, wrong, folders=("query",))[0]
    )


def test_scripts_help_and_make_synthetic(tmp_path):
    for name in ("download_qmul_v1", "prepare_reid", "make_synthetic"):
        res = subprocess.run([sys.executable, str(REPO / "data_scripts" / f"{name}.py"), "--help"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert res.returncode == 0 and "usage" in res.stdout
    mk = _script("make_synthetic")
    assert mk.main(["--out", str(tmp_path), "--datasets", "chairs", "dukemtmc", "--sbir-train", "6",
                    "--sbir-test", "4", "--reid-ids", "3"]) == 0  # fmt: skip
    assert (tmp_path / "synthetic" / "qmul_v1" / "chairs" / "chairs_annotation.json").is_file()
    assert load_reid("dukemtmc", tmp_path / "synthetic" / "reid" / "dukemtmc").num_train_pids == 3


def _evil_zip(small_market, path: Path, extra: list[zipfile.ZipInfo | tuple[str, bytes]]) -> Path:
    """The small market zip plus crafted members."""
    _, zpath, _, _ = small_market
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zpath, path)
    with zipfile.ZipFile(path, "a") as zf:
        for item in extra:
            if isinstance(item, zipfile.ZipInfo):
                zf.writestr(item, b"/etc/passwd")
            else:
                zf.writestr(*item)
    return path


def _symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_prepare_refuses_zip_members_that_leave_dest(small_market, tmp_path, kind):
    folder, _, counts, digests = small_market
    top = folder.name
    member = {"dotdot": f"{top}/bounding_box_train/../../../../X", "absolute": "/X",
              "symlink": f"{top}/bounding_box_train/0001_c1s1_000001_00.jpg"}[kind]  # fmt: skip
    item = _symlink_member(member) if kind == "symlink" else (member, b"written outside --dest")
    zpath = _evil_zip(small_market, tmp_path / "src" / "evil.zip", [item])
    dest = tmp_path / "a" / "b" / "market1501"
    with pytest.raises(prep.PrepareError) as err:
        prep.prepare("market1501", zpath, dest, counts, digests, progress=False)
    msg = str(err.value)
    why = {"dotdot": "'..' component", "absolute": "absolute path", "symlink": "symbolic link"}[kind]
    assert str(zpath) in msg and repr(member) in msg and why in msg and "nothing was extracted" in msg
    assert not any(p.name == "X" for p in tmp_path.rglob("*"))  # nothing written outside --dest
    assert not dest.exists() and not (dest.parent.exists() and list(dest.parent.iterdir()))  # no staging left
    assert prep.main(["market1501", "--src", str(zpath), "--dest", str(dest), "--no-progress"]) == 1


def test_force_keeps_the_old_dataset_until_the_new_one_is_complete(small_market, tmp_path):
    folder, zpath, counts, digests = small_market
    dest = tmp_path / "data" / "market1501"
    prep.prepare("market1501", zpath, dest, counts, digests, progress=False)
    before = _tree(dest)
    top = folder.name
    # a member aimed at the live dataset through the staging folder, and a copy failing its digest check
    into_old = _evil_zip(small_market, tmp_path / "s1" / "m.zip",
                         [(f"{top}/bounding_box_train/../../market1501/query/0001_c1s1_999999_00.jpg", b"evil")])  # fmt: skip
    broken = tmp_path / "s2" / top
    shutil.copytree(folder, broken)
    victim = sorted((broken / "query").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    for src, match in ((into_old, "'..' component"), (broken.parent, "content digest")):
        with pytest.raises(prep.PrepareError, match=match):
            prep.prepare("market1501", src, dest, counts, digests, force=True, progress=False)
        assert _tree(dest) == before  # the old dataset is untouched
        assert sorted(p.name for p in dest.parent.iterdir()) == ["market1501"]  # no staging / aside left
    prep.prepare("market1501", folder.parent, dest, counts, digests, force=True, progress=False)
    assert _tree(dest).keys() == before.keys() and sorted(p.name for p in dest.parent.iterdir()) == [
        "market1501"
    ]


def test_prepared_dataset_gets_normal_permissions(small_market, tmp_path, umask022):
    _, zpath, counts, digests = small_market
    dest = tmp_path / "market1501"
    prep.prepare("market1501", zpath, dest, counts, digests, progress=False)
    assert _modes(dest) == {("d", 0o755), ("f", 0o644)}  # not mkdtemp's 0700: learners can read it


def test_prepare_skips_appledouble_files(small_market, tmp_path):
    folder, _, counts, digests = small_market
    src = tmp_path / "mac" / folder.name
    shutil.copytree(folder, src)
    (src / "bounding_box_train" / "._0001_c1s1_000151_01.jpg").write_bytes(b"\x00\x05\x16\x07")
    dest = tmp_path / "market1501"
    prep.prepare(
        "market1501", src.parent, dest, counts, digests, progress=False
    )  # counts and digests still match
    assert not list(dest.rglob("._*"))
