#!/usr/bin/env python
"""Write every synthetic stand-in dataset (QMUL-V1-style shoes/chairs/handbags, Market/Duke/CUHK03-style ReID).

    python data_scripts/make_synthetic.py --out data [--seed 0]

``--out`` is a data root: files go to ``<out>/synthetic/qmul_v1/<category>/`` and ``<out>/synthetic/reid/<name>/``,
exactly where ``cdimlab.data.locate_dataset`` looks (it also generates them on demand; this script does it up front).
Deterministic for a seed; sizes are ``cdimlab.data.registry.SYNTH_DEFAULTS`` unless overridden.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cdimlab.data.registry import DATASETS, SYNTH_DEFAULTS, ensure_synthetic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="data root (files go to <out>/synthetic/...)")
    ap.add_argument("--seed", type=int, default=SYNTH_DEFAULTS.seed)
    ap.add_argument("--datasets", nargs="+", default=sorted(DATASETS), choices=sorted(DATASETS))
    ap.add_argument("--sbir-train", type=int, default=SYNTH_DEFAULTS.sbir_train)
    ap.add_argument("--sbir-test", type=int, default=SYNTH_DEFAULTS.sbir_test)
    ap.add_argument(
        "--reid-ids", type=int, default=SYNTH_DEFAULTS.reid_train_ids, help="train and test ids each"
    )
    args = ap.parse_args(argv)
    synth = dataclasses.replace(SYNTH_DEFAULTS, seed=args.seed, sbir_train=args.sbir_train, sbir_test=args.sbir_test,
                                reid_train_ids=args.reid_ids, reid_test_ids=args.reid_ids)  # fmt: skip
    for name in args.datasets:
        t0 = time.perf_counter()
        path = ensure_synthetic(name, args.out, synth)
        print(f"{name:16s} -> {path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
