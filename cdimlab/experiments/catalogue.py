"""The paper catalogue (pure data): every row Tables 3-11 train, as a named frozen config, with the paper's numbers.

Introduced in notebook 06 (ablations) and used by notebook 08 (reproducing the tables). ``EXPERIMENTS`` maps a name to an :class:`Experiment`; rows
that are the same run in several tables share ONE name (Table 3 "Ours" on shoes = Table 7 "conv5" = Table 9
"Flattening" = ``shoes_ours``; Table 4 "Ours" = Table 8 "res5(a,b)" = Table 10 "GAP" = ``market_ours``), so
``reproduce`` trains each once. ``PAPER_TABLES`` lists every row of each table in the paper's order, including
the competitor rows the paper cites from other papers (marked ``cited``: reference numbers, never re-run).

This is the one home of the paper's fusion configs (``OURS_SBIR``, ``OURS_REID``, ...) and of the profile names
(:data:`PROFILES`); a new profile adds its name there and a config to each ``_sbir``/``_reid`` dict. The runner
(:mod:`cdimlab.experiments.runner`) turns an entry into a results file. Paper numbers are fractions (0.6435 = 64.35%).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cdimlab.fusion import FusionConfig
from cdimlab.train.config import TrainConfig

SBIR_METRICS = ("acc@1", "acc@10")
REID_METRICS = ("mAP", "rank1", "mq_mAP", "mq_rank1")
PROFILES = (
    "smoke",
    "laptop",
    "full",
)  # CI pipeline check | real data on 2 CPU cores | the paper's GPU recipe


@dataclass(frozen=True)
class Experiment:
    """One trained row of the paper: what to build, what data, which recipe, and what the paper reported.

    ``model``: ``"fusion"`` (EmbeddingNet/ReIDNet with ``fusion``), ``"attention"`` (DSSA-style attention-only
    head over ``conv5``), ``"hog"`` (the hand-crafted baseline of :mod:`cdimlab.baselines`).
    ``eval_only_from``: evaluate, without training, a model built from another experiment's trained weights
    (Table 8 "Vanilla+fusion": GAP(res5a), GAP(res5b) of the trained Vanilla ResNet-50, no FC, L2 parts).
    """

    name: str
    table: int
    row: str
    task: str  # "fgsbir" | "reid"
    dataset: str
    backbone: str
    fusion: FusionConfig
    paper: dict[str, float] = field(hash=False)
    profiles: dict[str, TrainConfig] = field(hash=False)
    notes: str = ""
    eval_only_from: str | None = None
    model: str = "fusion"
    tables: tuple[int, ...] = ()
    weights: str | None = None  # backbone weights when the call gives none ("imagenet": the laptop track)

    def config(self, profile: str) -> TrainConfig:
        """The TrainConfig of ``profile`` (one of :data:`PROFILES`)."""
        if profile not in self.profiles:
            raise ValueError(
                f"unknown profile {profile!r} for {self.name}; choose one of {sorted(self.profiles)}"
            )
        return self.profiles[profile]

    @property
    def metrics(self) -> tuple[str, ...]:
        return SBIR_METRICS if self.task == "fgsbir" else REID_METRICS


# ------------------------------------------------------------------------------------------------ profiles
SBIR_FULL = TrainConfig(
    iterations=20_000, batch_size=128, lr=1e-3, optimizer="sgd", momentum=0.9, weight_decay=0.0, lr_decay=1.0,
    margin=0.3, distance="euclidean", eval_every=500, patience=10, checkpoint_every=1_000, log_every=50,
    sbir_input=225, sbir_resize=None, eval_protocol="10view",
)  # fmt: skip
# Smoke: Adam instead of the paper's SGD so that a few dozen CPU iterations visibly train a random-init
# Sketch-a-Net (synthetic shoes: loss 0.29 -> ~0.1 in 60 iterations at lr 1e-4, batch 16).
SBIR_SMOKE = replace(
    SBIR_FULL, iterations=40, batch_size=16, lr=1e-4, optimizer="adam", weight_decay=0.0, eval_every=20,
    patience=100, checkpoint_every=1_000, log_every=4, sbir_input=113, sbir_resize=128, eval_protocol="center",
    eval_batch_size=64,
)  # fmt: skip
INCEPTION_FULL = replace(SBIR_FULL, batch_size=64, sbir_input=299, sbir_resize=340)
INCEPTION_SMOKE = replace(SBIR_SMOKE, iterations=4, batch_size=4, eval_every=4, sbir_input=75, sbir_resize=85)
REID_FULL = TrainConfig(
    iterations=60_000, batch_size=64, lr=3.5e-4, optimizer="adam", weight_decay=5e-4, lr_decay=0.95,
    lr_decay_every=1_000, checkpoint_every=5_000, log_every=100, reid_input=(256, 128), eval_batch_size=512,
)  # fmt: skip
REID_SMOKE = replace(
    REID_FULL, iterations=8, batch_size=12, checkpoint_every=1_000, log_every=2, reid_input=(64, 32),
    eval_batch_size=128, max_ids=12,
)  # fmt: skip
CUHK_FULL = replace(REID_FULL, lr=5e-4, iterations=75_000)
# ---- laptop: real data, 2 CPU cores, minutes per run (docs/DEVIATIONS.md). Sketch-a-Net from scratch at 177 px,
# the smallest input whose pool5 keeps a 5x5 layout; Kaiming init + Adam (the paper's SGD does not move a
# from-scratch tower at CPU budgets). Validation (10 % of train) selects the best of every eval_every iterations.
# No flips (QMUL's objects share one pose) and half the loss from in-batch negatives: probes on real shoes (seed 0,
# 300 iterations) moved test acc@1 from 0.157 untrained to 0.174 (no flips) and 0.200 (in-batch negatives),
# against 0.122-0.139 with flips and the annotated triplets alone (results/laptop/README.md).
SBIR_LAPTOP = replace(
    SBIR_SMOKE, iterations=400, batch_size=16, lr=1e-4, eval_every=50, patience=100, checkpoint_every=50,
    log_every=10, sbir_input=177, sbir_resize=200, eval_protocol="center", eval_batch_size=64,
    sbir_flip=False, batch_negatives=0.5,
)  # fmt: skip
# ImageNet MobileNetV2 on sketches / edge maps (1 channel mapped onto ImageNet statistics), 128 crops of 144;
# the paper's loss and flips (what its committed records ran)
MNV2_SBIR_LAPTOP = replace(
    SBIR_LAPTOP, iterations=200, lr=1e-4, eval_every=50, sbir_input=128, sbir_resize=144, sbir_flip=True,
    batch_negatives=0.0,
)  # fmt: skip
# ImageNet MobileNetV2 on Market-1501 at 128x64: 300 iterations of 64 = 1.5 epochs of the 12,936 training images
# (evaluation batches of 64: on 2 CPU cores MobileNetV2 embeds ~2.5x faster than in batches of 256)
MNV2_REID_LAPTOP = replace(
    REID_FULL, iterations=300, batch_size=64, lr=3.5e-4, lr_decay=1.0, checkpoint_every=100, log_every=10,
    reid_input=(128, 64), eval_batch_size=64,
)  # fmt: skip
# The controlled shape-vs-parts experiment (notebook 06), on 1,000 synthetic training shoes: the smoke input (113 px)
# with the laptop recipe's loss (no flips, half in-batch negatives), 300 iterations (~35 s a run on 2 CPU cores).
# Ours fuses conv4: at 113 px it is the last map with a layout (5x5), as pool5 (7x7) is at the paper's 225 px.
CONTROLLED_SMOKE = replace(
    SBIR_SMOKE, iterations=300, eval_every=50, log_every=10, sbir_flip=False, batch_negatives=0.5,
)  # fmt: skip
CONTROLLED_OURS = FusionConfig(("conv4",), "flatten", None, True)
MNV2_OURS_SBIR = FusionConfig(("block13",), "flatten", None, True)  # 96 x 8 x 8 at 128 px, + L2(GAP(block18))
MNV2_OURS_REID = FusionConfig(
    ("block16", "block17"), "gap", 256, False
)  # as res5a/res5b -> FC, + GAP(block18)


def _sbir(profile_full: TrainConfig = SBIR_FULL, smoke: TrainConfig = SBIR_SMOKE,
          laptop: TrainConfig | None = None) -> dict[str, TrainConfig]:  # fmt: skip
    return {"smoke": smoke, "full": profile_full} | ({"laptop": laptop} if laptop else {})


def _reid(full: TrainConfig = REID_FULL) -> dict[str, TrainConfig]:
    return {"smoke": REID_SMOKE, "full": full}


def _p(*vals: float | None, keys: tuple[str, ...] = SBIR_METRICS) -> dict[str, float]:
    """Paper numbers in percent -> {metric: fraction}; ``None`` (a "-" in the paper) is left out."""
    return {k: round(v / 100, 6) for k, v in zip(keys, vals, strict=False) if v is not None}


def _r(*vals: float | None) -> dict[str, float]:
    return _p(*vals, keys=REID_METRICS)


OURS_SBIR = FusionConfig(("conv5",), "flatten", None, True)
VANILLA_SBIR = FusionConfig()
OURS_REID = FusionConfig(("res5a", "res5b"), "gap", 1024, False)
VANILLA_REID = FusionConfig(l2_parts=False)
CATEGORIES = ("shoes", "chairs", "handbags")
# the controlled experiment's pairs (notebook 06): identity in global shape / in small local parts
CONTROLLED_PAIRS: tuple[tuple[str, str], ...] = (
    ("shape_vanilla", "shape_ours"),
    ("parts_vanilla", "parts_ours"),
)
CAT_LABEL = {"shoes": "QMUL-Shoe", "chairs": "QMUL-Chair", "handbags": "QMUL-Handbag"}

# Table 3 (and 7, 9, 11) paper numbers, percent: {category: {row: (acc@1, acc@10)}}
_T3 = {
    "shoes": {
        "HOG-BoW+rankSVM": (17.39, 67.83), "Dense-HOG+rankSVM": (24.35, 65.22), "ISN Deep+rankSVM": (20.00, 62.61),
        "DSSA (attention only)": (54.78, None), "DSSA": (61.74, 94.78), "Vanilla": (52.17, 92.17),
        "Ours": (64.35, 93.04),
    },
    "chairs": {
        "HOG-BoW+rankSVM": (28.87, 67.01), "Dense-HOG+rankSVM": (52.57, 93.81), "ISN Deep+rankSVM": (47.42, 82.47),
        "DSSA (attention only)": (74.23, None), "DSSA": (81.44, 95.88), "Vanilla": (72.16, 98.96),
        "Ours": (84.54, 97.94),
    },
    "handbags": {
        "HOG-BoW+rankSVM": (2.38, 10.71), "Dense-HOG+rankSVM": (15.47, 40.48), "ISN Deep+rankSVM": (9.52, 44.05),
        "DSSA (attention only)": (41.07, None), "DSSA": (49.40, 82.74), "Vanilla": (39.88, 82.14),
        "Ours": (50.00, 83.33),
    },
}  # fmt: skip
_CITE3 = {"HOG-BoW+rankSVM": "[18]", "Dense-HOG+rankSVM": "[11]", "ISN Deep+rankSVM": "[38]", "DSSA": "[27]"}
_T11 = {
    "shoes": ((57.39, 91.30), (72.12, 96.52)),
    "chairs": ((88.66, 98.97), (97.94, 100.0)),
    "handbags": ((45.83, 82.14), (65.48, 90.48)),
}


def _build_experiments() -> dict[str, Experiment]:
    """Every trained row of Tables 3-11, once per distinct run."""
    ex: list[Experiment] = []
    for cat in CATEGORIES:
        t3 = _T3[cat]
        ex += [
            Experiment(f"{cat}_vanilla", 3, "Vanilla", "fgsbir", cat, "sketchanet", VANILLA_SBIR,
                       _p(*t3["Vanilla"]), _sbir(laptop=SBIR_LAPTOP), "Sketch-a-Net, L2(fc7) embedding, triplet loss"),
            Experiment(f"{cat}_ours", 3, "Ours", "fgsbir", cat, "sketchanet", OURS_SBIR, _p(*t3["Ours"]),
                       _sbir(laptop=SBIR_LAPTOP),
                       "conv5 (pool5) flattened + fc7, each L2-normalised: 12,800-d",
                       tables=(3, 7, 9) if cat == "shoes" else (3,)),
            Experiment(f"{cat}_attention", 3, "DSSA (attention only)", "fgsbir", cat, "sketchanet", OURS_SBIR,
                       _p(*t3["DSSA (attention only)"]), _sbir(),
                       "DSSA-style 1x1-conv spatial attention over conv5 + fc7 (paper number cited from [27])",
                       model="attention"),
            Experiment(f"{cat}_hog", 3, "HOG + linear ranking (course baseline)", "fgsbir", cat, "hog",
                       VANILLA_SBIR, {}, _sbir(),
                       "our HOG + triplet-hinge linear map: no paper number (compare with the cited HOG rows "
                       "above it, which used other features and rankSVM)", model="hog"),
            Experiment(f"{cat}_inception", 11, "InceptionV3", "fgsbir", cat, "inception_v3", VANILLA_SBIR,
                       _p(*_T11[cat][0]), _sbir(INCEPTION_FULL, INCEPTION_SMOKE),
                       "InceptionV3, L2(pool) embedding; paper fine-tunes ImageNet weights (none offline here)"),
            Experiment(f"{cat}_inception_fusion", 11, "InceptionV3+fusion module", "fgsbir", cat, "inception_v3",
                       FusionConfig(("Mixed_7b",), "flatten", None, True), _p(*_T11[cat][1]),
                       _sbir(INCEPTION_FULL, INCEPTION_SMOKE), "Mixed_7b flattened + pool, each L2-normalised"),
        ]  # fmt: skip
    t7 = {"conv3": (60.0, 92.17), "conv4": (60.87, 90.43), "conv4,5": (62.61, 93.04)}
    for label, taps in (("conv3", ("conv3",)), ("conv4", ("conv4",)), ("conv4,5", ("conv4", "conv5"))):
        name = "shoes_" + "_".join(taps)
        ex.append(Experiment(name, 7, label, "fgsbir", "shoes", "sketchanet", FusionConfig(taps, "flatten"),
                             _p(*t7[label]), _sbir(), "fuse these taps (flattened) with fc7"))  # fmt: skip
    ex.append(Experiment("shoes_gap", 9, "GAP", "fgsbir", "shoes", "sketchanet", FusionConfig(("conv5",), "gap"),
                         _p(58.26, 93.04), _sbir(), "conv5 global-average-pooled (256-d) + fc7"))  # fmt: skip
    reid = {
        "market1501": ("market", 4, (67.55, 87.32, 75.98, 91.45), (75.55, 89.87, 82.37, 93.32), REID_FULL),
        "dukemtmc": ("duke", 5, (50.68, 72.67), (63.88, 80.43), REID_FULL),
        "cuhk03_labeled": ("cuhk03_labeled", 6, (35.77, 40.64), (47.52, 51.50), CUHK_FULL),
        "cuhk03_detected": ("cuhk03_detected", 6, (32.82, 36.36), (43.51, 47.14), CUHK_FULL),
    }
    for ds, (short, table, van, ours, full) in reid.items():
        ex += [
            Experiment(f"{short}_vanilla", table, "Vanilla", "reid", ds, "resnet50", VANILLA_REID, _r(*van),
                       _reid(full), "ResNet-50, pool5 (2048-d) embedding, softmax over training identities"),
            Experiment(f"{short}_ours", table, "Ours", "reid", ds, "resnet50", OURS_REID, _r(*ours), _reid(full),
                       "GAP(res5a), GAP(res5b) -> FC 1024, concat pool5: 3,072-d",
                       tables=(4, 8, 10) if ds == "market1501" else (table,)),
        ]  # fmt: skip
    t8 = {
        "res2, res3, res4": (("res2", "res3", "res4"), (71.24, 88.36, 79.02, 92.43)),
        "res4(a-f)": (tuple(f"res4{c}" for c in "abcdef"), (73.17, 89.90, 80.58, 93.53)),
        "res2,3,4 + res5(a,b)": (("res2", "res3", "res4", "res5a", "res5b"), (74.52, 89.93, 81.85, 93.00)),
    }
    for label, (taps, nums) in t8.items():
        name = "market_" + {"res2, res3, res4": "res2_3_4", "res4(a-f)": "res4a_f"}.get(label, "res2_3_4_5ab")
        ex.append(Experiment(name, 8, label, "reid", "market1501", "resnet50", FusionConfig(taps, "gap", 1024, False),
                             _r(*nums), _reid(), "these taps GAP -> FC 1024, concat pool5"))  # fmt: skip
    ex.append(Experiment("market_vanilla_fusion", 8, "Vanilla+fusion", "reid", "market1501", "resnet50",
                         FusionConfig(("res5a", "res5b"), "gap", None, True), _r(71.88, 88.87, 79.64, 92.70),
                         _reid(), "no training: GAP(res5a), GAP(res5b) of the trained Vanilla, L2 parts, no FC",
                         eval_only_from="market_vanilla"))  # fmt: skip
    ex.append(Experiment("market_flatten", 10, "Flattening", "reid", "market1501", "resnet50",
                         FusionConfig(("res5a", "res5b"), "flatten", 1024, False), _r(71.58, 89.25, 78.56, 92.28),
                         _reid(), "res5a, res5b flattened -> FC 1024, concat pool5"))  # fmt: skip
    ex += _laptop_track() + _controlled_track()
    out = {}
    for e in ex:
        if not e.tables:
            e = replace(e, tables=(e.table,))
        out[e.name] = e
    return out


def _laptop_track() -> list[Experiment]:
    """The laptop track's own rows (table 0: not a paper table): ImageNet MobileNetV2, Vanilla vs Ours, on the real
    QMUL sets and Market-1501. Paper numbers are left out: another backbone, another schedule."""
    ex = []
    for cat in CATEGORIES:
        ex += [
            Experiment(f"{cat}_mnv2_vanilla", 0, "MobileNetV2 Vanilla", "fgsbir", cat, "mobilenetv2", VANILLA_SBIR,
                       {}, {"laptop": MNV2_SBIR_LAPTOP}, "ImageNet MobileNetV2, L2(GAP(block18))", weights="imagenet"),
            Experiment(f"{cat}_mnv2_ours", 0, "MobileNetV2 Ours", "fgsbir", cat, "mobilenetv2", MNV2_OURS_SBIR,
                       {}, {"laptop": MNV2_SBIR_LAPTOP}, "block13 flattened (96x8x8) + GAP(block18), each L2",
                       weights="imagenet"),
        ]  # fmt: skip
    ex += [
        Experiment("market_mnv2_vanilla", 0, "MobileNetV2 Vanilla", "reid", "market1501", "mobilenetv2",
                   VANILLA_REID, {}, {"laptop": MNV2_REID_LAPTOP}, "ImageNet MobileNetV2, raw GAP(block18) 1280-d",
                   weights="imagenet"),
        Experiment("market_mnv2_ours", 0, "MobileNetV2 Ours", "reid", "market1501", "mobilenetv2", MNV2_OURS_REID,
                   {}, {"laptop": MNV2_REID_LAPTOP}, "GAP(block16), GAP(block17) -> FC 256, concat GAP(block18)",
                   weights="imagenet"),
    ]  # fmt: skip
    return ex


def _controlled_track() -> list[Experiment]:
    """The controlled experiment of notebook 06 (table 0, smoke profile only): Sketch-a-Net on two synthetic shoe
    sets that differ in one switch, where identity lives (``shoes_shape``: global shape only; ``shoes_parts``: small
    local parts only; :func:`cdimlab.data.synthetic.synthetic_sbir`). Vanilla (fc7) vs fusing ``conv4`` (5x5 at
    113 px, the map that keeps places) vs fusing the paper's ``conv5`` (pool5: only 2x2 at 113 px)."""
    ex = []
    for where in ("shape", "parts"):
        ex += [
            Experiment(f"{where}_vanilla", 0, f"Vanilla, identity in {where}", "fgsbir", f"shoes_{where}",
                       "sketchanet", VANILLA_SBIR, {}, {"smoke": CONTROLLED_SMOKE}, "Sketch-a-Net, L2(fc7)"),
            Experiment(f"{where}_ours", 0, f"Ours (conv4), identity in {where}", "fgsbir", f"shoes_{where}",
                       "sketchanet", CONTROLLED_OURS, {}, {"smoke": CONTROLLED_SMOKE},
                       "conv4 (256x5x5 at 113 px) flattened + fc7, each L2"),
            Experiment(f"{where}_conv5", 0, f"conv5 (2x2), identity in {where}", "fgsbir", f"shoes_{where}",
                       "sketchanet", OURS_SBIR, {}, {"smoke": CONTROLLED_SMOKE},
                       "conv5 (pool5: 256x2x2 at 113 px) flattened + fc7, each L2"),
        ]  # fmt: skip
    return ex


EXPERIMENTS: dict[str, Experiment] = _build_experiments()
# the laptop track: (Vanilla, Ours) pairs run by `python -m cdimlab laptop` over seeds
LAPTOP_PAIRS: tuple[tuple[str, str], ...] = (  # cheapest first: one seed of each finishes early
    ("shoes_mnv2_vanilla", "shoes_mnv2_ours"),
    ("chairs_mnv2_vanilla", "chairs_mnv2_ours"),
    ("shoes_vanilla", "shoes_ours"),
    ("market_mnv2_vanilla", "market_mnv2_ours"),
    ("handbags_mnv2_vanilla", "handbags_mnv2_ours"),
)


@dataclass(frozen=True)
class TableRow:
    """One row of a paper table: a label, the experiment that reproduces it (None for cited rows), the paper's
    numbers, and ``cited`` (the reference, when the paper copied the number from another paper)."""

    label: str
    experiment: str | None
    paper: dict[str, float] = field(hash=False)
    cited: str | None = None
    group: str = ""


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    metrics: tuple[str, ...]
    rows: tuple[TableRow, ...]


def _build_tables() -> dict[int, PaperTable]:
    """Tables 3-11 in the paper's row order."""
    E = EXPERIMENTS
    t3 = []
    for cat in CATEGORIES:
        for label, nums in _T3[cat].items():
            g = CAT_LABEL[cat]
            if label in _CITE3:
                t3.append(TableRow(label, None, _p(*nums), _CITE3[label], g))
            else:
                name = {"DSSA (attention only)": "attention", "Vanilla": "vanilla", "Ours": "ours"}[label]
                t3.append(TableRow(label, f"{cat}_{name}", _p(*nums), None, g))
        t3.append(TableRow(E[f"{cat}_hog"].row, f"{cat}_hog", E[f"{cat}_hog"].paper, None, CAT_LABEL[cat]))
    cited4 = {
        "HP-net* [20]": (None, 76.9), "Spindle* [40]": (None, 76.9), "Basel. + OIM [34]": (None, 82.1),
        "DPA* [41]": (63.4, 81.0), "SVDNet [29]": (62.1, 82.3), "DaF [39]": (72.4, 82.3), "ACRN [25]": (62.6, 83.6),
        "Context* [15]": (57.5, 80.3, 66.7, 86.8), "JLML [16]": (64.4, 83.9, 74.5, 89.7),
        "Basel. + LSRO [44]": (66.1, 84.0, 76.1, 88.4), "SSM [2]": (68.8, 82.2, 76.2, 88.2),
    }  # fmt: skip
    t4 = [TableRow(k, None, _r(*v), k.split(" [")[-1].rstrip("]").join("[]")) for k, v in cited4.items()]
    t4 += [_row(E, "market_vanilla"), _row(E, "market_ours")]
    cited5 = {
        "Basel. + LSRO [44]": (47.13, 67.68), "Basel. + OIM [34]": (None, 68.1), "APR [19]": (51.88, 70.69),
        "ACRN [25]": (51.96, 72.58), "SVDNet [29]": (56.8, 76.7),
    }  # fmt: skip
    t5 = [TableRow(k, None, _r(*v), "[" + k.split("[")[-1]) for k, v in cited5.items()]
    t5 += [_row(E, "duke_vanilla"), _row(E, "duke_ours")]
    cited6 = {"DaF [39]": ((31.5, 27.5), (30.0, 26.4)), "SVDNet [29]": ((37.8, 40.9), (37.3, 41.5)),
              "Re-rank [45]": ((40.3, 38.1), (37.4, 34.7))}  # fmt: skip
    t6 = []
    for kind, j in (("labeled", 0), ("detected", 1)):
        grp = "Labelled" if kind == "labeled" else "Detected"
        t6 += [TableRow(k, None, _r(*v[j]), "[" + k.split("[")[-1], grp) for k, v in cited6.items()]
        t6 += [_row(E, f"cuhk03_{kind}_vanilla", grp), _row(E, f"cuhk03_{kind}_ours", grp)]
    t7 = [_row(E, n) for n in ("shoes_conv3", "shoes_conv4", "shoes_conv4_conv5")]
    t7.append(TableRow("conv5 (Ours)", "shoes_ours", E["shoes_ours"].paper))
    t8 = [
        _row(E, n)
        for n in ("market_vanilla_fusion", "market_res2_3_4", "market_res4a_f", "market_res2_3_4_5ab")
    ]
    t8.append(TableRow("res5(a,b) (Ours)", "market_ours", E["market_ours"].paper))
    t9 = [_row(E, "shoes_gap"), TableRow("Flattening (Ours)", "shoes_ours", E["shoes_ours"].paper)]
    t10 = [_row(E, "market_flatten"), TableRow("GAP (Ours)", "market_ours", E["market_ours"].paper)]
    t11 = []
    for cat in CATEGORIES:
        t11 += [
            _row(E, f"{cat}_inception", CAT_LABEL[cat]),
            _row(E, f"{cat}_inception_fusion", CAT_LABEL[cat]),
        ]
    S, R = SBIR_METRICS, REID_METRICS
    specs = [
        (3, "Comparative results on FG-SBIR", S, t3),
        (4, "Comparative results on Market-1501 (single and multi query)", R, t4),
        (5, "Comparative results on DukeMTMC-reID", R[:2], t5),
        (6, "Comparative results on CUHK03-New (labelled, detected)", R[:2], t6),
        (7, "Fusing different layers for FG-SBIR on QMUL-Shoe", S, t7),
        (8, "Fusing different layers for ReID on Market-1501", R, t8),
        (9, "Pooling methods for FG-SBIR on QMUL-Shoe", S, t9),
        (10, "Pooling methods for ReID on Market-1501", R, t10),
        (11, "The fusion module with InceptionV3 (FG-SBIR)", S, t11),
    ]
    return {n: PaperTable(n, title, m, tuple(rows)) for n, title, m, rows in specs}


def _row(E: dict[str, Experiment], name: str, group: str = "") -> TableRow:
    return TableRow(E[name].row, name, E[name].paper, None, group)


PAPER_TABLES: dict[int, PaperTable] = _build_tables()


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; a ValueError lists the valid names otherwise."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid names: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


def experiments_for_tables(tables: list[int] | None = None) -> list[str]:
    """Names of the experiments needed for ``tables`` (all of 3-11 when None), each once, eval-only rows last."""
    nums = sorted(PAPER_TABLES) if not tables else tables
    names: list[str] = []
    for n in nums:
        if n not in PAPER_TABLES:
            raise ValueError(f"no table {n}; the paper's tables are {sorted(PAPER_TABLES)}")
        for row in PAPER_TABLES[n].rows:
            if row.experiment and row.experiment not in names:
                names.append(row.experiment)
    deps = [EXPERIMENTS[n].eval_only_from for n in names if EXPERIMENTS[n].eval_only_from]
    names = [d for d in deps if d not in names] + names
    return sorted(names, key=lambda n: EXPERIMENTS[n].eval_only_from is not None)
