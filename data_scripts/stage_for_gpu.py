#!/usr/bin/env python
"""Stage the real data for a borrowed GPU machine in bundles of at most 64 MiB, and check them on arrival.

    python data_scripts/stage_for_gpu.py --plan                        # bundle plan and sizes, writes nothing
    python data_scripts/stage_for_gpu.py [--src /work/shared/data] [--dest .gpu/bundles]
    python data_scripts/stage_for_gpu.py --check .gpu/bundles [--only qmul] [--unpack-to .gpu/data]

Introduced in notebook 08 (the GPU runs). The GPU machines take at most 64 MiB per transfer, so the data goes as
bundles, each a folder ``<dest>/<bundle>/`` holding ``<bundle>.zip`` and ``manifest.json`` (every file with its size
and sha256, the archive's sha256); the limit applies to the folder (zip + manifest). Bundles: ``qmul`` (QMUL V1
shoes + chairs ``.mat`` and annotation files), ``market_train`` (``bounding_box_train``), ``market_test``
(``query`` + ``bounding_box_test``) and ``market_gt_bbox`` (the multi-query boxes, only when it fits; the script
says so otherwise). Market-1501 is read from the official zip in ``<src>/reid/`` or a prepared
``<src>/reid/market1501/``. Every bundle's size is printed; one over the limit is an error (nothing is kept under
its name). ``--check`` verifies each bundle (archive digest, then every file's digest) and unpacks it into the
layout the loaders read, ``<unpack-to>/qmul_v1/<category>/...`` and ``<unpack-to>/reid/market1501/<folder>/...``,
replacing a folder only once the whole bundle has verified. ``.gpu/`` is git-ignored. Standard library only.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

MIB = 2**20
LIMIT_MIB = 64.0
REPO = Path(__file__).resolve().parents[1]
QMUL_CATEGORIES = ("shoes", "chairs")
MARKET_BUNDLES = {"market_train": ("bounding_box_train",), "market_test": ("query", "bounding_box_test"),
                  "market_gt_bbox": ("gt_bbox",)}  # fmt: skip
OPTIONAL = {"market_gt_bbox"}
REQUIRED = ("qmul", "market_train", "market_test")


@dataclass
class Entry:
    """One file of a bundle: its name inside the bundle, its size, and how to read it (a path or a zip member)."""

    arcname: str
    size: int
    est_bytes: int  # estimated compressed size
    path: Path | None = None
    member: tuple[Path, str] | None = None

    def read(self) -> bytes:
        if self.path is not None:
            return self.path.read_bytes()
        zpath, name = self.member
        return _open_zip(zpath).read(name)


@functools.lru_cache(maxsize=4)
def _open_zip(path: Path) -> zipfile.ZipFile:
    """One open handle per source zip (reopening a 68K-member zip per file would take minutes)."""
    return zipfile.ZipFile(path)


@dataclass
class Bundle:
    """A planned bundle: ``unpack_to`` is its place relative to the data root."""

    name: str
    unpack_to: str
    entries: list[Entry] = field(default_factory=list)

    def estimate(self) -> int:
        """Upper estimate of zip + manifest bytes: data, local + central headers, the manifest's JSON."""
        names = sum(len(e.arcname.encode()) for e in self.entries)
        data = sum(e.est_bytes for e in self.entries) * 1.001 + 64 * len(self.entries)
        manifest = len(
            _manifest_json(self, [(e.arcname, e.size, "0" * 64) for e in self.entries], "0" * 64, 0)
        )
        return int(data + 2 * names + 76 * len(self.entries) + 22 + manifest + 1024)


def _manifest_json(b: Bundle, files: list, digest: str, nbytes: int) -> bytes:
    obj = {"bundle": b.name, "archive": f"{b.name}.zip", "archive_sha256": digest, "archive_bytes": nbytes,
           "unpack_to": b.unpack_to, "files": files}  # fmt: skip
    return json.dumps(obj, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------ planning
def qmul_bundle(src: Path) -> Bundle:
    """QMUL V1 shoes + chairs: every file of ``<src>/qmul_v1/{shoes,chairs}/`` and the checksum lists beside them."""
    root = src / "qmul_v1"
    b = Bundle("qmul", "qmul_v1")
    for cat in QMUL_CATEGORIES:
        folder = root / cat
        if not folder.is_dir():
            raise FileNotFoundError(f"stage_for_gpu: {folder} is missing; fetch it with "
                                    f"python data_scripts/download_qmul_v1.py --dest {root}")  # fmt: skip
        files = sorted(p for p in folder.iterdir() if p.is_file())
        b.entries += [Entry(f"{cat}/{p.name}", p.stat().st_size, p.stat().st_size, path=p) for p in files]
    b.entries += [Entry(p.name, p.stat().st_size, p.stat().st_size, path=p)
                  for p in sorted(root.glob("*SUM*")) + sorted(root.glob("GIT_BLOB_SHA1")) if p.is_file()]  # fmt: skip
    return b


def market_entries(src: Path) -> dict[str, list[Entry]]:
    """Market-1501 JPEGs per folder from ``<src>/reid/market1501/`` or the official ``<src>/reid/Market-1501*.zip``."""
    folder = src / "reid" / "market1501"
    out: dict[str, list[Entry]] = {f: [] for fs in MARKET_BUNDLES.values() for f in fs}
    if (folder / "bounding_box_train").is_dir():
        for f in out:
            for p in sorted((folder / f).glob("*.jpg")) if (folder / f).is_dir() else []:
                out[f].append(Entry(f"{f}/{p.name}", p.stat().st_size, p.stat().st_size, path=p))
        return out
    zips = sorted((src / "reid").glob("Market-1501*.zip"))
    if not zips:
        raise FileNotFoundError(f"stage_for_gpu: no Market-1501 under {src / 'reid'} (want market1501/ or the "
                                "official Market-1501-v15.09.15.zip)")  # fmt: skip
    with zipfile.ZipFile(zips[0]) as z:
        for info in z.infolist():
            parts = info.filename.split("/")
            if len(parts) >= 2 and parts[-2] in out and parts[-1].endswith(".jpg"):
                out[parts[-2]].append(Entry(f"{parts[-2]}/{parts[-1]}", info.file_size,
                                            info.compress_size, member=(zips[0], info.filename)))  # fmt: skip
    return {f: sorted(v, key=lambda e: e.arcname) for f, v in out.items()}


def plan_bundles(src: Path) -> list[Bundle]:
    """Every bundle that the data under ``src`` gives, in staging order."""
    bundles = [qmul_bundle(src)]
    market = market_entries(src)
    for name, folders in MARKET_BUNDLES.items():
        b = Bundle(name, "reid/market1501", [e for f in folders for e in market[f]])
        if not b.entries and name not in OPTIONAL:
            raise FileNotFoundError(
                f"stage_for_gpu: Market-1501 under {src / 'reid'} has no {'/'.join(folders)}"
            )
        bundles.append(b)
    return bundles


def print_plan(bundles: list[Bundle], limit: float) -> tuple[list[Bundle], list[str]]:
    """Print the plan; returns (bundles to write, problems with required bundles)."""
    keep, problems = [], []
    print(f"{'bundle':<16} {'files':>7} {'MiB (est.)':>11}  limit {limit:g} MiB")
    for b in bundles:
        mib = b.estimate() / MIB
        fits = mib <= limit
        note = "ok" if fits else ("SKIPPED: does not fit (optional)" if b.name in OPTIONAL else "TOO LARGE")
        print(f"{b.name:<16} {len(b.entries):>7} {mib:>11.1f}  {note}")
        if fits:
            keep.append(b)
        elif b.name not in OPTIONAL:
            problems.append(
                f"bundle {b.name} would be {mib:.1f} MiB > {limit:g} MiB; split it or raise --limit-mib"
            )
    return keep, problems


# ------------------------------------------------------------------------------------------- writing
def write_bundle(b: Bundle, dest: Path, limit: float) -> int:
    """Write ``<dest>/<name>/{<name>.zip, manifest.json}``; returns its bytes. Over ``limit``: removed, error."""
    out = dest / b.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{b.name}.", dir=dest))
    try:
        files = []
        with zipfile.ZipFile(tmp / f"{b.name}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
            for e in b.entries:
                data = e.read()
                z.writestr(zipfile.ZipInfo(e.arcname, (2015, 9, 15, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
                files.append((e.arcname, len(data), hashlib.sha256(data).hexdigest()))
        zbytes = (tmp / f"{b.name}.zip").stat().st_size
        (tmp / "manifest.json").write_bytes(_manifest_json(b, files, _sha256(tmp / f"{b.name}.zip"), zbytes))
        total = zbytes + (tmp / "manifest.json").stat().st_size
        if total > limit * MIB:
            raise SystemExit(f"stage_for_gpu: bundle {b.name} is {total / MIB:.2f} MiB > {limit:g} MiB (removed); "
                             "split it or raise --limit-mib")  # fmt: skip
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return total
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ checking
def check_bundle(folder: Path, unpack_to: Path | None) -> int:
    """Verify ``folder`` (archive digest, every file's digest) and unpack it under ``unpack_to``; returns files."""
    man_path = folder / "manifest.json"
    man = json.loads(man_path.read_text())
    archive = folder / man["archive"]
    if not archive.is_file():
        raise SystemExit(f"check: {archive} is missing; transfer the whole folder {folder}")
    if archive.stat().st_size != man["archive_bytes"] or _sha256(archive) != man["archive_sha256"]:
        raise SystemExit(f"check: {archive} does not match {man_path} (size or sha256): the transfer is "
                         "corrupt or partial; transfer it again")  # fmt: skip
    want = {name: (size, digest) for name, size, digest in man["files"]}
    target = None if unpack_to is None else unpack_to / man["unpack_to"]
    staging = None
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{man['bundle']}.", dir=target))
    try:
        with zipfile.ZipFile(archive) as z:
            names = set(z.namelist())
            if names != set(want):
                raise SystemExit(f"check: {archive} holds {len(names)} files, its manifest {len(want)}; "
                                 f"differences: {sorted(names ^ set(want))[:5]}")  # fmt: skip
            for name in sorted(names):
                data = z.read(name)
                if (len(data), hashlib.sha256(data).hexdigest()) != want[name]:
                    raise SystemExit(
                        f"check: {archive}::{name} has the wrong size or sha256; transfer it again"
                    )
                if staging is not None:
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    (staging / name).write_bytes(data)
        if staging is not None:
            for top in sorted({n.split("/")[0] for n in names}):
                dst = target / top
                if dst.is_dir():
                    shutil.rmtree(dst)
                os.replace(staging / top, dst)
        return len(names)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def check_all(root: Path, unpack_to: Path | None, only: list[str] | None) -> list[str]:
    """Check (and unpack) every bundle folder under ``root`` (or ``only`` those); returns the problems."""
    found = sorted(p.parent.name for p in root.glob("*/manifest.json"))
    wanted = only or found
    problems = [f"bundle {n} not found in {root}" for n in (only or REQUIRED) if n not in found]
    if not only and "market_gt_bbox" not in found:
        print("note: no market_gt_bbox bundle: Market-1501 multi-query evaluation will be skipped")
    for name in wanted:
        if name in found:
            n = check_bundle(root / name, unpack_to)
            where = f" -> {unpack_to}" if unpack_to is not None else ""
            print(f"{name:<16} {n:>7} files verified{where}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--src", type=Path, default=Path("/work/shared/data"), help="data root with qmul_v1/ and reid/"
    )
    p.add_argument("--dest", type=Path, default=REPO / ".gpu" / "bundles", help="where bundles are written")
    p.add_argument(
        "--limit-mib", type=float, default=LIMIT_MIB, help="largest bundle folder (MiB, default 64)"
    )
    p.add_argument("--plan", action="store_true", help="print bundles and estimated sizes; write nothing")
    p.add_argument("--check", type=Path, metavar="DIR", help="verify the bundles in DIR and unpack them")
    p.add_argument("--only", nargs="+", metavar="BUNDLE", help="with --check: just these bundles")
    p.add_argument("--unpack-to", type=Path, default=None,
                   help="with --check: data root to unpack into (default: DIR/../data); 'none' = verify only")  # fmt: skip
    a = p.parse_args(argv)
    if a.check is not None:
        unpack = a.check.parent / "data" if a.unpack_to is None else a.unpack_to
        problems = check_all(a.check, None if str(unpack) == "none" else unpack, a.only)
    else:
        keep, problems = print_plan(plan_bundles(a.src), a.limit_mib)
        if not a.plan and not problems:
            a.dest.mkdir(parents=True, exist_ok=True)
            for b in keep:
                size = write_bundle(b, a.dest, a.limit_mib)
                print(f"wrote {a.dest / b.name} ({size / MIB:.2f} MiB)")
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
