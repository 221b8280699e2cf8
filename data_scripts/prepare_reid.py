#!/usr/bin/env python
"""Prepare a ReID dataset you obtained from its authors: copy/extract it into place, check layout, counts, digests.

    python data_scripts/prepare_reid.py market1501 --src Market-1501-v15.09.15.zip --dest data/reid/market1501
    python data_scripts/prepare_reid.py dukemtmc   --src DukeMTMC-reID.zip --dest data/reid/dukemtmc
    python data_scripts/prepare_reid.py cuhk03     --src cuhk03_release_or_np --dest data/reid/cuhk03

``--src`` is the zip or the folder (or any parent of the dataset folder). Every zip member name is checked first: a
zip with an absolute path, a ``..`` component or a symlink is refused before anything is written. The copy is made in
a staging folder beside ``--dest``, checked there, and renamed into place only when every check passes, so ``--dest``
never holds a broken copy and nothing is written outside it; on failure the staging folder is removed. ``--force``
keeps the old dataset until the new one is complete (old renamed aside, new renamed in, old deleted). Files get the
usual permissions (0644/0755 under umask 022) so every user of a shared machine can read them. Checks: the folders
exist, each holds the expected number of files (Thumbs.db and other non-data files excluded), and for Market-1501
each folder's content digest (sha256 of the text that ``sha256sum -- <files sorted by name, C locale>`` prints)
equals the one recorded from the official release.
DukeMTMC-reID has been withdrawn by its creators; this script only serves people who already hold a copy.
CUHK03: the "CUHK03-NP" layout (``labeled/``, ``detected/``) or the original ``cuhk-03.mat`` release plus
``cuhk03_new_protocol_config_{labeled,detected}.mat`` (copied as is; images are extracted on first load).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import stat
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cdimlab.data.reid import DUKE_WITHDRAWN, MARKET1501_DIGESTS  # noqa: E402
from cdimlab.utils import atomic_directory  # noqa: E402

SKIP_NAMES = {"Thumbs.db", ".DS_Store", "desktop.ini"}
#: expected file counts per folder (relative to the dataset folder)
COUNTS: dict[str, dict[str, int]] = {
    "market1501": {k: v[0] for k, v in MARKET1501_DIGESTS.items() if k != "gt_query"},
    "dukemtmc": {"bounding_box_train": 16522, "bounding_box_test": 17661, "query": 2228},
    "cuhk03": {
        "labeled/bounding_box_train": 7368,
        "labeled/bounding_box_test": 5328,
        "labeled/query": 1400,
        "detected/bounding_box_train": 7365,
        "detected/bounding_box_test": 5332,
        "detected/query": 1400,
    },  # fmt: skip
}
DIGESTS: dict[str, dict[str, str]] = {"market1501": {k: v[1] for k, v in MARKET1501_DIGESTS.items()}}
CUHK03_ORIGINAL = (
    "cuhk-03.mat",
    "cuhk03_new_protocol_config_labeled.mat",
    "cuhk03_new_protocol_config_detected.mat",
)
OPTIONAL = {"market1501": ("gt_query",)}  # copied and checked when present


class PrepareError(RuntimeError):
    """The source is incomplete or wrong; the message lists every problem found."""


def skipped(name: str) -> bool:
    """Non-data files never copied or counted: Thumbs.db & co, dot-files such as macOS ``._*.jpg`` AppleDouble."""
    return name in SKIP_NAMES or name.startswith(".")


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why zip member ``info`` must not be extracted (absolute path, ``..`` component, symlink), or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts:
        return "'..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def check_members(zf: zipfile.ZipFile, zpath: Path) -> None:
    """Refuse the whole zip, before anything is extracted, if any member could land outside the destination."""
    bad = [(i.filename, why) for i in zf.infolist() if (why := member_problem(i)) is not None]
    if bad:
        listed = "".join(f"\n  - {name!r}: {why}" for name, why in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise PrepareError(
            f"{zpath}: {len(bad)} zip member(s) could be written outside --dest; nothing was extracted. The zip is "
            f"not the official release (or was tampered with): get a fresh copy.{listed}{more}"
        )


def safe_target(staging: Path, rel: str) -> Path:
    """``staging / rel``, refusing any ``rel`` whose resolved path leaves ``staging`` (second line of defence)."""
    out = staging / rel
    if not out.resolve().is_relative_to(staging.resolve()):
        raise PrepareError(
            f"{rel!r} resolves to {out.resolve()}, outside the staging folder {staging}; refused"
        )
    return out


class Tree:
    """A zip or a directory, listed as relative POSIX paths with a reader per file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise PrepareError(f"--src {self.path} does not exist")
        self.zip = zipfile.ZipFile(self.path) if self.path.is_file() else None
        if self.zip is not None:
            check_members(self.zip, self.path)
            self.names = sorted(n for n in self.zip.namelist() if not n.endswith("/"))
        else:
            self.names = sorted(
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
            )

    def reader(self, rel: str) -> Callable[[], bytes]:
        if self.zip is not None:
            return lambda: self.zip.read(rel)
        return lambda: (self.path / rel).read_bytes()

    def files(self, folder: str) -> list[tuple[str, Callable[[], bytes]]]:
        """(base name, reader) for the data files directly inside ``folder`` (non-data files skipped)."""
        pre = folder.rstrip("/") + "/"
        out = [n for n in self.names if n.startswith(pre) and "/" not in n[len(pre) :]]
        return [(n[len(pre) :], self.reader(n)) for n in out if not skipped(n[len(pre) :])]

    def find(self, marker: str) -> str | None:
        """Shortest prefix under which ``marker`` (a folder or file path) exists, e.g. ``"Market-1501-v15.09.15/"``."""
        hits = []
        for n in self.names:
            i = n.find(marker)
            if i >= 0 and (i == 0 or n[i - 1] == "/"):
                hits.append(n[:i])
        return min(hits, key=len) if hits else None


def digest(files: list[tuple[str, Callable[[], bytes]]]) -> str:
    """sha256 of what ``sha256sum -- <names sorted, C locale>`` prints ("<hex>  <name>\\n" per file)."""
    lines = [
        f"{hashlib.sha256(read()).hexdigest()}  {name}\n"
        for name, read in sorted(files, key=lambda t: t[0].encode())
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def layout_prefix(tree: Tree, dataset: str) -> tuple[str, dict[str, int]]:
    """(prefix of the dataset folder inside ``tree``, folder -> expected count) or PrepareError."""
    marker = "labeled/bounding_box_train/" if dataset == "cuhk03" else "bounding_box_train/"
    prefix = tree.find(marker)
    if prefix is None:
        extra = f" {DUKE_WITHDRAWN}." if dataset == "dukemtmc" else ""
        raise PrepareError(
            f"{tree.path}: no '{marker.rstrip('/')}' folder found; is this the {dataset} release?{extra}"
        )
    return prefix, COUNTS[dataset]


def check(src: str | Path | Tree, dataset: str, counts: dict[str, int] | None = None,
          digests: dict[str, str] | None = None, folders: tuple[str, ...] | None = None,
          progress: bool = False) -> list[str]:  # fmt: skip
    """Problems found in ``src`` (zip or folder) for ``dataset``; an empty list means the copy is complete.

    ``counts``/``digests`` override the built-in tables (tests, other releases); ``folders`` restricts the checks.
    """
    tree = src if isinstance(src, Tree) else Tree(Path(src))
    if dataset == "cuhk03" and tree.find(CUHK03_ORIGINAL[0]) is not None:
        pre = tree.find(CUHK03_ORIGINAL[0])
        return [
            f"missing {pre}{f} next to cuhk-03.mat" for f in CUHK03_ORIGINAL if f"{pre}{f}" not in tree.names
        ]
    prefix, default_counts = layout_prefix(tree, dataset)
    counts = default_counts if counts is None else counts
    digests = DIGESTS.get(dataset, {}) if digests is None else digests
    problems = []
    for folder in sorted(set(counts) | set(digests)):
        if folders is not None and folder not in folders:
            continue
        files = tree.files(prefix + folder)
        if not files:
            if folder in OPTIONAL.get(dataset, ()):
                continue
            problems.append(f"missing folder {prefix + folder!r} (expected {counts.get(folder, '?')} files)")
            continue
        if folder in counts and len(files) != counts[folder]:
            problems.append(
                f"{folder}: {len(files)} files, expected {counts[folder]} (incomplete or wrong release)"
            )
        if folder in digests:
            got = digest(tqdm(files, desc=f"hash {folder}", disable=not progress, leave=False))
            if got != digests[folder]:
                problems.append(f"{folder}: content digest {got[:16]}... != expected {digests[folder][:16]}... "
                                "(files are corrupt or from another release; get a fresh copy)")  # fmt: skip
    return problems


def prepare(dataset: str, src: str | Path, dest: str | Path, counts: dict[str, int] | None = None,
            digests: dict[str, str] | None = None, force: bool = False, progress: bool = True) -> Path:  # fmt: skip
    """Copy the dataset from ``src`` into ``dest`` via a checked temp folder + rename; PrepareError on problems."""
    if dataset not in COUNTS:
        raise PrepareError(f"unknown dataset {dataset!r}; choose from {sorted(COUNTS)}")
    dest = Path(dest)
    if dest.exists() and not force:
        raise PrepareError(f"{dest} already exists; pass --force to replace it")
    tree = Tree(Path(src))
    original = dataset == "cuhk03" and tree.find(CUHK03_ORIGINAL[0]) is not None
    if original:
        pre = tree.find(CUHK03_ORIGINAL[0])
        wanted = [pre + f for f in CUHK03_ORIGINAL if pre + f in tree.names]
    else:
        pre, table = layout_prefix(tree, dataset)
        keep = set(table) | set(digests or {}) | set(OPTIONAL.get(dataset, ())) | {"readme.txt"}
        wanted = [n for n in tree.names if n.startswith(pre) and not skipped(Path(n).name)
                  and any(n[len(pre):] == k or n[len(pre):].startswith(k + "/") for k in keep)]  # fmt: skip
    with atomic_directory(dest) as staging:
        for n in tqdm(wanted, desc=f"copy {dataset}", disable=not progress):
            out = safe_target(staging, n[len(pre) :])
            out.parent.mkdir(parents=True, exist_ok=True)
            if tree.zip is not None:
                out.write_bytes(tree.zip.read(n))
            else:
                shutil.copyfile(tree.path / n, out)
        problems = check(Tree(staging), dataset, counts, digests, progress=progress)
        if problems:
            raise PrepareError(
                f"{dataset} from {src} failed its checks ({dest} left unchanged):\n  - "
                + "\n  - ".join(problems)
            )
        (staging / ".prepared.json").write_text(
            json.dumps({"dataset": dataset, "src": str(src), "files": len(wanted)})
        )
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(COUNTS))
    ap.add_argument("--src", type=Path, required=True, help="the zip or folder you obtained")
    ap.add_argument("--dest", type=Path, required=True, help="e.g. data/reid/market1501")
    ap.add_argument("--counts", type=Path, help="JSON {folder: count} replacing the built-in expected counts")
    ap.add_argument("--digests", type=Path, help="JSON {folder: sha256} replacing the built-in digests")
    ap.add_argument("--force", action="store_true", help="replace an existing --dest")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    counts = json.loads(args.counts.read_text()) if args.counts else None
    digests = json.loads(args.digests.read_text()) if args.digests else None
    try:
        out = prepare(args.dataset, args.src, args.dest, counts, digests, args.force, not args.no_progress)
    except (PrepareError, zipfile.BadZipFile) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dataset} ready in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
