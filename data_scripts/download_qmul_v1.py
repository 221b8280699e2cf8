#!/usr/bin/env python
"""Download and verify the QMUL FG-SBIR V1 data (shoes, chairs, handbags) from the authors' public repository.

Source: github.com/yuqian1023/Deep_SBIR_tf, folder data/ (commit 838c17c9), raw URL pattern
``<base-url>/<category>/<file>``. Every file is checked against the checksum tables below (sha256 where known,
otherwise git's blob id ``sha1(b"blob <size>\\0" + content)``), downloaded to a temp file, verified, then renamed:
a bad or partial file never sits under the final name. Verified files are skipped on a second run (resume).
Downloaded files get the usual permissions (0644 under umask 022). A ``--checksums`` table whose entries are not
plain ``<category>/<file>`` paths (absolute, ``..``) is refused before anything is downloaded.

    python data_scripts/download_qmul_v1.py --dest data/qmul_v1 --categories shoes chairs [--with-images]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cdimlab.utils import file_mode, remove_orphans, temp_prefix  # noqa: E402

BASE_URL = "https://raw.githubusercontent.com/yuqian1023/Deep_SBIR_tf/master/data"
CATEGORIES = ("shoes", "chairs", "handbags")

# sha256 of the released files (from the maintainers' data/README + SHA256SUMS)
SHA256: dict[str, str] = {
    "chairs/chairs_annotation.json": "559859e80991856334fd3ee84408a4d225255b1017b029aa95b95784a672a917",
    "chairs/chairs_edge_db_test.mat": "d429cd73c92c1a6ceef3262f18a0c9acc135a4e8136fa04fbdd0bf4bc7a1be8a",
    "chairs/chairs_edge_db_train.mat": "4f21547d8c4466fcd86746d003ac148aa26bee9e834bfc341a40c62318b1c6a2",
    "chairs/chairs_sketch_db_test.mat": "ebe92e8826ffc2011ad420e94a9bb5cffbe2ea0fc72908480c062909d77bc237",
    "chairs/chairs_sketch_db_train.mat": "6d50d1aef109c7514439e1527735455596728aa973e2914e64a8850789d8f89f",
    "shoes/shoes_annotation.json": "391ecb273e2f55b8cace9922caae120ba9e93b5a13d9f467961901142410ebd9",
    "shoes/shoes_edge_db_test.mat": "34ddbcec5f14e0b358b537a82063a2026156da0f079a8a39e0839ea475369fd3",
    "shoes/shoes_edge_db_train.mat": "ca1744d77c1674862e67d2f3fa4b07ff4d4a587017a4096275e977d3c7d73cc4",
    "shoes/shoes_sketch_db_test.mat": "5f66f4801287c79600c7272c1072a878046536d1d24555230493f4aec4c2c065",
    "shoes/shoes_sketch_db_train.mat": "7e6d238778fed20226b9fa4e93747555862a5f695305e865fa90c65a22469dbe",
    "shoes/shoes_train_triplets.mat": "042e83b7098a216ad35abd2ba114cbe7ebc096c2018588f357b12206f08f766a",
    "handbags/handbags_annotation.json": "391ecb273e2f55b8cace9922caae120ba9e93b5a13d9f467961901142410ebd9",
    "handbags/handbags_edge_db_test.mat": "11046166a2849ff819bd7536561b723227db7fbc5e3be7b9e1fb8952e8f2689a",
    "handbags/handbags_edge_db_train.mat": "9cb6d640a7d0eb3eae98d63107bacd22d1391b70089ff3b78ca479f5b928a3c2",
    "handbags/handbags_sketch_db_test.mat": "1740095eaec5c58acca57c9331d30726c0199bbf8d14c49aab3c07ef40bf68af",
    "handbags/handbags_sketch_db_train.mat": "813ed639dd87872d6f512ba234f9d47d2744ddf63ac442336a722cc9d1899c05",
    "handbags/handbags_triplets_train.mat": "1354b1afc930f1f8645dcc8f31c8f920e1af296fee65d18f82f4ef147b33caa0",
}
# git blob sha1 ids (the repository's tree); the only checksum known for the RGB photo databases
GIT_BLOB_SHA1: dict[str, str] = {
    "chairs/chairs_annotation.json": "23e60273d9b9f14ac885690f1f6890bb47ae0f06",
    "chairs/chairs_edge_db_test.mat": "a143b701e1564d6aad6e1697aa1dde3e7c7fe985",
    "chairs/chairs_edge_db_train.mat": "2baa2c50f0432e5a6d9584859d6fa99731cd38f6",
    "chairs/chairs_image_db_test.mat": "8ec1cca4734e7a17aa1f119c97ea3294ab54549c",
    "chairs/chairs_image_db_train.mat": "582ac913005e690c474fdd2815e098828b3a3b9c",
    "chairs/chairs_sketch_db_test.mat": "d81b5563fd8bfc15a960e5cdd4055750c9863c5d",
    "chairs/chairs_sketch_db_train.mat": "41360472ba9321243d93ac0bdf6a657e12f424c8",
    "handbags/handbags_annotation.json": "f186f8fcb7f66e228fec31fd49828025c52bb0ac",
    "handbags/handbags_edge_db_test.mat": "dcf2b7e6c7bd72ef6715ca2cd32e7a492fbd23fd",
    "handbags/handbags_edge_db_train.mat": "1e1c3ef0ff884744ca52c265043f7f6079cd28d6",
    "handbags/handbags_image_db_test.mat": "f121ed4972d68d8684a186ae6129be68513f10ae",
    "handbags/handbags_sketch_db_test.mat": "498dc27ed8cb52b75a920d2218be6ad6d60ee03b",
    "handbags/handbags_sketch_db_train.mat": "6e2fef392e85e84ea7bec817c70afe16f3658767",
    "handbags/handbags_triplets_train.mat": "f6c2003ed5bfdd3773e3086d64c26a5cab8edd2f",
    "shoes/shoes_annotation.json": "f186f8fcb7f66e228fec31fd49828025c52bb0ac",
    "shoes/shoes_edge_db_test.mat": "d48b5cc04221907f0064412d4d3d03fbde0ec9e8",
    "shoes/shoes_edge_db_train.mat": "d5eb61b20d7898c2937e4b1f9de8b411b2c8fb28",
    "shoes/shoes_image_db_test.mat": "2d6cb1c43853f143306cb13ee9fc15169e6720d5",
    "shoes/shoes_image_db_train.mat": "699faed44e0b3b92c9749382384e59580bc4e70d",
    "shoes/shoes_sketch_db_test.mat": "135da67d2d82e9678d479985d8225ad768a34a2d",
    "shoes/shoes_sketch_db_train.mat": "09c01685de739985b6e4f55c00d0352ad807755b",
    "shoes/shoes_train_triplets.mat": "9b2a13b92bb5b4868765fe30f98892f3b9050a73",
}


class DownloadError(RuntimeError):
    """A file could not be downloaded and verified; the message names it and says what to do."""


@dataclass(frozen=True)
class Expected:
    """The checksum a file must match: ``algo`` is "sha256" or "git-blob-sha1"."""

    algo: str
    hexdigest: str


def file_table(categories: list[str], with_images: bool, sha256: dict[str, str] | None = None,
               blobs: dict[str, str] | None = None) -> dict[str, Expected]:  # fmt: skip
    """``{"<category>/<file>": Expected}`` for the chosen categories; sha256 preferred, git blob id otherwise."""
    sha256 = SHA256 if sha256 is None else sha256
    blobs = GIT_BLOB_SHA1 if blobs is None else blobs
    out: dict[str, Expected] = {}
    for rel in sorted(set(sha256) | set(blobs)):
        cat, fname = rel.split("/", 1)
        if cat not in categories or ("_image_db_" in fname and not with_images):
            continue
        out[rel] = Expected("sha256", sha256[rel]) if rel in sha256 else Expected("git-blob-sha1", blobs[rel])
    return out


def digest_file(path: Path, algo: str) -> str:
    """sha256 of a file, or its git blob id (sha1 over ``b"blob <size>\\0"`` + content)."""
    if algo == "sha256":
        h = hashlib.sha256()
    else:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path: Path, exp: Expected) -> bool:
    """True when ``path`` exists and matches its checksum."""
    return path.is_file() and digest_file(path, exp.algo) == exp.hexdigest


def _fetch(url: str, tmp: Path, desc: str, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``tmp``; raise on HTTP errors or a body shorter than Content-Length."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
        total = resp.headers.get("Content-Length")
        total = int(total) if total else None
        got = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=desc, disable=not progress, leave=False
        ) as bar:
            while chunk := resp.read(1 << 16):
                fh.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if total is not None and got != total:
            raise OSError(f"truncated response: {got} of {total} bytes")


def unsafe_entry(rel: str) -> str | None:
    """Why table entry ``rel`` could land outside ``--dest`` (absolute, ``..``, backslash, empty part), or None."""
    if not rel or rel.startswith(("/", "\\", "~")) or (len(rel) > 1 and rel[1] == ":"):
        return "absolute path"
    parts = rel.split("/")
    if "\\" in rel or any(part in ("", ".", "..") for part in parts):
        return "'..', '.', empty or backslash path component"
    return None


def check_table(files: dict[str, Expected], source: str = "the checksum table") -> None:
    """Refuse the whole table, before any download, if an entry is not a plain ``<category>/<file>`` path."""
    bad = [(rel, why) for rel in sorted(files) if (why := unsafe_entry(rel)) is not None]
    if bad:
        listed = "".join(f"\n  - {rel!r}: {why}" for rel, why in bad[:5])
        raise DownloadError(
            f"{source}: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} could be written outside --dest; nothing "
            f"was downloaded. Entries must be relative '<category>/<file>' paths such as "
            f"'shoes/shoes_annotation.json'; fix or delete these lines:{listed}"
        )


def download_file(url: str, dest: Path, exp: Expected, retries: int = 3, backoff: float = 1.0,
                  progress: bool = True, timeout: float = 60.0) -> Path:  # fmt: skip
    """Download ``url`` to ``dest`` via a temp file, verify, rename; retry with exponential backoff.

    A missing file (HTTP 404) is not retried. On failure nothing bad is left under ``dest``: a partial download
    only ever lives in a ``.part`` temp file, and an older file there that fails verification is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(dest)  # .part files of a download that was killed
    last = ""
    for attempt in range(1, retries + 1):
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=temp_prefix(dest), suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(url, tmp, dest.name, progress, timeout)
            got = digest_file(tmp, exp.algo)
            if got == exp.hexdigest:
                # mkstemp's 0600 -> 0644 under umask 022: readable by every learner on a shared machine
                os.chmod(tmp, file_mode())
                os.replace(tmp, dest)
                return dest
            last = f"checksum mismatch ({exp.algo} {got[:12]}... != expected {exp.hexdigest[:12]}...)"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 404:
                break
        except (OSError, urllib.error.URLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            tmp.unlink(missing_ok=True)
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    if dest.exists() and not verified(dest, exp):
        dest.unlink()
    raise DownloadError(
        f"could not download {dest.name} from {url}: {last}. Check your internet connection and run the script "
        f"again (verified files are kept); if it keeps failing, download the file by hand from the URL, put it at "
        f"{dest} and rerun to verify it"
    )


def download(dest: str | Path, categories: list[str] | tuple[str, ...] = ("shoes", "chairs", "handbags"),
             base_url: str = BASE_URL, with_images: bool = False, table: dict[str, Expected] | None = None,
             retries: int = 3, backoff: float = 1.0, progress: bool = True) -> dict[str, str]:  # fmt: skip
    """Fetch every missing or bad file of ``categories`` into ``<dest>/<category>/``.

    Returns ``{rel_path: "skipped" | "downloaded"}``; raises ``DownloadError`` after trying all files when some
    failed (the message lists them). ``table`` overrides the embedded checksums (tests, mirrors).
    """
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {CATEGORIES}")
    files = table if table is not None else file_table(list(categories), with_images)
    check_table(files)
    dest = Path(dest)
    status: dict[str, str] = {}
    errors: list[str] = []
    for rel, exp in tqdm(sorted(files.items()), desc="QMUL V1", disable=not progress):
        target = dest / rel
        if verified(target, exp):
            status[rel] = "skipped"
            continue
        try:
            download_file(f"{base_url.rstrip('/')}/{rel}", target, exp, retries, backoff, progress)
            status[rel] = "downloaded"
        except DownloadError as exc:
            status[rel] = "failed"
            errors.append(str(exc))
    if errors:
        raise DownloadError("\n".join(errors))
    return status


def parse_checksum_file(path: Path) -> dict[str, Expected]:
    """A ``sha256sum``-style file (``<hex>  <category>/<file>``) -> table for ``download(table=...)``.

    Raises ``DownloadError`` naming the file and line for a malformed line or an entry that leaves ``--dest``.
    """
    out = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        hexd = fields[0].lower()
        if len(fields) != 2 or len(hexd) not in (40, 64) or any(c not in "0123456789abcdef" for c in hexd):
            raise DownloadError(f"{path}:{lineno}: expected '<sha256 or git blob sha1 hex>  <category>/<file>', "
                                f"got {line!r}")  # fmt: skip
        rel = fields[1].strip().lstrip("*").removeprefix("data/")
        out[rel] = Expected("sha256" if len(hexd) == 64 else "git-blob-sha1", hexd)
        check_table({rel: out[rel]}, f"{path}:{lineno}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dest", type=Path, default=Path("data/qmul_v1"), help="target folder (default data/qmul_v1)"
    )
    ap.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    ap.add_argument("--base-url", default=BASE_URL, help="mirror or test server serving <category>/<file>")
    ap.add_argument(
        "--with-images", action="store_true", help="also fetch the RGB photo databases (*_image_db_*)"
    )
    ap.add_argument("--checksums", type=Path, help="sha256sum-style table replacing the embedded one")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry (doubles)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    table = None
    try:
        if args.checksums:
            table = {
                k: v
                for k, v in parse_checksum_file(args.checksums).items()
                if k.split("/")[0] in args.categories
            }
        status = download(args.dest, args.categories, args.base_url, args.with_images, table, args.retries,
                          args.backoff, not args.no_progress)  # fmt: skip
    except DownloadError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    n_new = sum(v == "downloaded" for v in status.values())
    print(
        f"QMUL V1 in {args.dest}: {len(status)} files verified ({n_new} downloaded, {len(status) - n_new} already there)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
