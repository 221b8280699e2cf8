"""The one runner: experiment -> data -> model -> fit -> evaluate -> results file.

Introduced in notebook 06 and used by ``python -m cdimlab``, :mod:`cdimlab.course`, :mod:`cdimlab.bench` and
notebooks 06-08. Each step is a small public function, so a caller takes only what it needs:

* :func:`load_data` -- the ONE place data is resolved: experiment + profile + data root -> :class:`RunData`
  (splits or ReID index) with ``source = {"kind": "real" | "synthetic", "path": ...}``;
* :func:`build_model` -- the network of an experiment; :data:`NETWORKS` lists the backbones it may name (a
  new backbone is one entry there and one in ``cdimlab.models``), the task picks the config's input size;
* :func:`fit` / :func:`evaluate` -- train (or, for eval-only rows, load) and score on the test split;
* :func:`load_trained` -- a finished run folder back as ``(model, cfg)``;
* :func:`run_experiment` -- the results file ``results/<profile>/<name>.json`` (paths and the atomic write:
  :mod:`cdimlab.experiments.records`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cdimlab.attention import AttentionNet
from cdimlab.baselines import run_hog_baseline
from cdimlab.chance import reid_chance, sbir_chance
from cdimlab.data import decode_images, load_qmul_v1, load_reid, locate_dataset, train_val_split
from cdimlab.data.registry import default_cache_root
from cdimlab.experiments.catalogue import Experiment, get_experiment
from cdimlab.experiments.records import experiment_of, result_path, run_dir, shown_path, write_record
from cdimlab.fusion import EmbeddingNet, ReIDNet
from cdimlab.models import build_backbone
from cdimlab.train import (
    FitResult,
    TrainConfig,
    best_weights_path,
    evaluate_reid,
    evaluate_sbir,
    fit_classifier,
    fit_triplet,
    load_best_weights,
    reid_eval_banks,
    run_config,
)
from cdimlab.utils import env_info, resolve_device, seed_everything

# the backbones an experiment may name (each one entry in cdimlab.models); the task says which TrainConfig field
# sizes its input: FG-SBIR "sbir_input" (square crop), ReID "reid_input" (H, W)
NETWORKS = ("sketchanet", "inception_v3", "resnet50", "mobilenetv2")


# ----------------------------------------------------------------------------------------------------- data
@dataclass
class RunData:
    """The data of one run: FG-SBIR ``train``/``val``/``test`` splits, or a ReID index in ``reid``; ``source``
    says where it came from (``{"kind": "real" | "synthetic", "path": str}``)."""

    task: str
    source: dict[str, str]
    train: Any = None
    val: Any = None
    test: Any = None
    reid: Any = None
    train_full: Any = None  # FG-SBIR: the whole training split (the HOG baseline uses it all)
    banks: Any = None  # ReID: query/gallery images decoded once (before training), reused by every evaluation

    @property
    def cache_dir(self) -> Path | None:
        """Where decoded real images are cached (``<cache>/decoded``); None for synthetic data."""
        return default_cache_root() / "decoded" if self.source.get("kind") == "real" else None


def locate(dataset: str, data_root: Any = None, allow_synthetic: bool = True) -> tuple[Path, dict[str, str]]:
    """Folder of ``dataset`` under ``data_root`` (real data, else -- smoke only -- the synthetic stand-in) and its
    description for records (``{"name", "kind", "path"}``, the path relative to the data root or cache)."""
    loc = locate_dataset(dataset, data_root, allow_synthetic=allow_synthetic)
    return Path(loc.path), loc.describe(data_root)


def load_sbir_splits(category: str, data_root: Any = None, seed: int = 0, val_fraction: float = 0.1,
                     allow_synthetic: bool = True) -> RunData:  # fmt: skip
    """QMUL ``category``: train (minus a validation split carved from it, never from test), val and test."""
    path, source = locate(category, data_root, allow_synthetic)
    full = load_qmul_v1(path, category, "train")
    train, val = train_val_split(full, val_fraction, seed)
    return RunData("fgsbir", source, train, val, load_qmul_v1(path, category, "test"), train_full=full)


def subset_reid(data: Any, max_ids: int | None) -> Any:
    """Keep ``max_ids`` training identities, ``max_ids`` query identities with their gallery images plus half as
    many other gallery images (smoke runs on real data: minutes, not hours, on a CPU)."""
    if not max_ids or data.num_train_pids <= max_ids:
        return data
    train = [e for e in data.train if e[1] < max_ids]
    keep = set(sorted({e[1] for e in data.query})[:max_ids])
    query = [e for e in data.query if e[1] in keep]
    gallery = [e for e in data.gallery if e[1] in keep]
    others = [e for e in data.gallery if e[1] not in keep][
        : len(gallery) // 2
    ]  # distractors, junk, other ids
    gt = [e for e in data.gt_bbox if e[1] in keep] if data.gt_bbox else None
    return replace(data, train=train, query=query, gallery=gallery + others, gt_bbox=gt, num_train_pids=max_ids,
                   num_query_pids=len(keep), num_gallery_pids=len({e[1] for e in gallery + others}))  # fmt: skip


def load_reid_index(name: str, data_root: Any = None, max_ids: int | None = None,
                    allow_synthetic: bool = True) -> RunData:  # fmt: skip
    """ReID dataset ``name`` indexed (not decoded); on real data only ``max_ids`` identities when given."""
    path, source = locate(name, data_root, allow_synthetic)
    data = load_reid(name, path)
    if source["kind"] == "real":
        data = subset_reid(data, max_ids)
    return RunData("reid", source, reid=data)


def synthetic_allowed(profile: str) -> bool:
    """Only the smoke profile may stand in synthetic data for an absent dataset; laptop and full never do."""
    return profile == "smoke"


def load_data(exp: Experiment, profile: str, data_root: Any = None, seed: int = 0,
              allow_synthetic: bool | None = None, cfg: TrainConfig | None = None) -> RunData:  # fmt: skip
    """The data of ``exp`` for ``profile`` (or for ``cfg``: its ``val_fraction``, ``max_ids``): the one place a
    run's data is resolved; ``RunData.source`` says real or synthetic, and where. ``allow_synthetic`` defaults
    to :func:`synthetic_allowed` of the profile."""
    cfg = cfg or exp.config(profile)
    if allow_synthetic is None:
        allow_synthetic = synthetic_allowed(profile)
    if exp.task == "fgsbir":
        return load_sbir_splits(exp.dataset, data_root, seed, cfg.val_fraction, allow_synthetic)
    return load_reid_index(exp.dataset, data_root, cfg.max_ids, allow_synthetic)


# ---------------------------------------------------------------------------------------------------- model
def build_model(
    exp: Experiment, cfg: TrainConfig, num_classes: int | None = None, weights: str | None = None
):
    """The network of ``exp`` at the input size of ``cfg`` (random init unless ``weights`` -- or the
    experiment's own ``weights``, e.g. ImageNet MobileNetV2 for the laptop track -- say otherwise)."""
    if exp.backbone not in NETWORKS:
        raise ValueError(f"{exp.name}: backbone {exp.backbone!r} is not a network; known: {sorted(NETWORKS)}")
    size = cfg.reid_input if exp.task == "reid" else cfg.sbir_input
    kw: dict[str, Any] = {"input_size": tuple(size) if isinstance(size, list) else size}
    if exp.backbone == "mobilenetv2" and exp.task == "fgsbir":
        kw["in_channels"] = 1  # sketches and edge maps: one channel, mapped onto the ImageNet normalisation
    bb = build_backbone(exp.backbone, weights=weights or exp.weights, **kw)
    if exp.model == "attention":
        return AttentionNet(bb, "conv5")
    if exp.task == "reid" and exp.eval_only_from is None:
        if num_classes is None:
            raise ValueError("a ReID model needs num_classes (the number of training identities)")
        return ReIDNet(bb, exp.fusion, num_classes)
    return EmbeddingNet(bb, exp.fusion)


def load_trained(folder: str | os.PathLike, exp: Experiment | None = None, device: Any = "cpu",
                 cfg: TrainConfig | None = None) -> tuple[nn.Module, TrainConfig]:  # fmt: skip
    """A finished run folder (``runs/<profile>/<name>``) as ``(model in eval mode on device, its config)``.

    The experiment defaults to the one its ``checkpoint.pt`` records (else the folder's name without a
    ``.seed<k>`` suffix), the config to the one in the checkpoint. A checkpoint of another experiment or model
    than asked for is refused (:class:`cdimlab.train.CheckpointError`); files are verified and weights-only.
    """
    from cdimlab.train import CHECKPOINT, check_identity, describe_model, load_checkpoint

    folder = Path(folder)
    ck_path = folder / CHECKPOINT
    ident = (load_checkpoint(ck_path).get("identity") or {}) if ck_path.is_file() or cfg is None else {}
    exp = exp or get_experiment(ident.get("experiment") or experiment_of(folder.name))
    check_identity(ck_path, ident, {"experiment": exp.name})
    state = load_best_weights(folder)
    cfg = cfg or run_config(folder)
    classes = ReIDNet.num_classes_in(state) if exp.task == "reid" and exp.eval_only_from is None else None
    model = build_model(exp, cfg, num_classes=classes)
    check_identity(ck_path, ident, {"model": describe_model(model)})
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval(), cfg


# ------------------------------------------------------------------------------------------ fit, evaluate
@dataclass
class Trained:
    """What :func:`fit` hands to :func:`evaluate`: the model (None for the HOG baseline, which scores itself)."""

    model: nn.Module | None
    fit: FitResult | None = None
    schedule: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] | None = None


def fit(exp: Experiment, cfg: TrainConfig, data: RunData, device: Any = "auto", folder: Path | None = None, *,
        resume: bool | str = "compatible", progress: bool = True, weights: str | None = None,
        profile: str = "smoke", runs_root: Any = None, data_root: Any = None, out_root: Any = None) -> Trained:  # fmt: skip
    """Train ``exp`` on ``data`` into ``folder`` (resume policy: :func:`cdimlab.train.resume_checkpoint`).

    Eval-only rows (Table 8 "Vanilla+fusion") load the trained backbone of ``exp.eval_only_from`` (trained
    first, through :func:`run_experiment`, when its run folder holds no weights).
    """
    dev = resolve_device(device)
    if exp.model == "hog":
        metrics, sched = run_hog_baseline(
            data.train_full, data.test, seed=cfg.seed, smoke=(profile == "smoke")
        )
        return Trained(None, None, sched, metrics)
    if exp.eval_only_from:
        src = run_dir(exp.eval_only_from, profile, runs_root, cfg.seed)
        if not best_weights_path(src).is_file():
            run_experiment(exp.eval_only_from, profile, data_root, out_root, device=dev, seed=cfg.seed,
                           force=True, runs_root=runs_root, progress=progress)  # fmt: skip
        model = build_model(exp, cfg)
        model.backbone.load_state_dict(ReIDNet.backbone_state(load_best_weights(src)))
        return Trained(model.to(dev).eval(), None, {"eval_only_from": exp.eval_only_from})
    if exp.task == "fgsbir":
        model = build_model(exp, cfg, weights=weights)
        res = fit_triplet(model, data.train, data.val, cfg, dev, folder, resume=resume, progress=progress)
        return Trained(res.model, res, {"protocol": cfg.eval_protocol})
    size = tuple(cfg.reid_input)
    cache = (
        None if data.cache_dir is None else data.cache_dir / f"{data.reid.name}_train_{size[0]}x{size[1]}.npy"
    )
    imgs = decode_images([e[0] for e in data.reid.train], size=size, progress=progress, cache=cache)
    labels = torch.as_tensor([e[1] for e in data.reid.train])
    model = build_model(exp, cfg, num_classes=data.reid.num_train_pids, weights=weights)
    res = fit_classifier(model, imgs, labels, cfg, dev, folder, resume=resume, progress=progress)
    return Trained(res.model, res, {})


def evaluate(
    exp: Experiment,
    model: nn.Module,
    data: RunData,
    cfg: TrainConfig,
    device: Any = "auto",
    multi_query: bool = True,
) -> dict:
    """Test-split metrics of ``model``: acc@1/acc@10 (FG-SBIR, ``cfg.eval_protocol``) or mAP/CMC (ReID)."""
    dev = resolve_device(device)
    if exp.task == "fgsbir":
        return evaluate_sbir(model.to(dev), data.test, dev, cfg.eval_protocol, cfg)
    if data.banks is None:  # decoded once per run: a bad query/gallery image fails before training, not after
        data.banks = reid_eval_banks(data.reid, dev, cfg, cache_dir=data.cache_dir)
    return evaluate_reid(model.to(dev), data.banks, dev, multi_query=multi_query, cfg=cfg)


def chance_of(exp: Experiment, data: RunData) -> dict[str, float]:
    """Chance level of each metric on this run's test data (see :mod:`cdimlab.chance`)."""
    if exp.task == "fgsbir":
        return sbir_chance(len(data.test))
    d = data.reid
    q = [(e[1], e[2]) for e in d.query]
    g = [(e[1], e[2]) for e in d.gallery]
    out = reid_chance([p for p, _ in q], [p for p, _ in g], [c for _, c in q], [c for _, c in g])
    return {"rank1": out["rank1"], "mAP": out["mAP"]}


def untrained_score(exp: Experiment, cfg: TrainConfig, data: RunData, device: Any = "auto",
                    weights: str | None = None) -> dict[str, float] | None:  # fmt: skip
    """Test metrics of the same network at its initial weights (same seed as the trained run): the floor a
    trained number must clear. None for rows that do not train (HOG, eval-only). ReID: single query only
    (multi-query would embed Market's 25,259 gt_bbox images once more for a floor)."""
    if exp.model == "hog" or exp.eval_only_from:
        return None
    seed_everything(cfg.seed)
    classes = data.reid.num_train_pids if exp.task == "reid" else None
    model = build_model(exp, cfg, num_classes=classes, weights=weights)
    return evaluate(exp, model, data, cfg, device, multi_query=False)


# ------------------------------------------------------------------------------------------------- records
def make_record(exp: Experiment, profile: str, cfg: TrainConfig, trained: Trained, metrics: dict[str, float],
                data: RunData, weights: str | None, folder: Path, wall_s: float, device: torch.device,
                untrained: dict[str, float] | None = None, chance: dict[str, float] | None = None) -> dict:  # fmt: skip
    """The results record of one run (the format ``cdimlab.report`` reads), with the same network's untrained
    score and chance beside the trained metrics."""
    rec: dict[str, Any] = {"experiment": exp.name, "table": exp.table, "tables": list(exp.tables), "row": exp.row,
                           "task": exp.task, "dataset": exp.dataset, "profile": profile, "seed": cfg.seed,
                           "paper": exp.paper, "fusion": exp.fusion.__dict__ | {"taps": list(exp.fusion.taps)},
                           "model": exp.model, "backbone": exp.backbone,
                           "weights": weights or exp.weights or "random init"}  # fmt: skip
    sched, res = dict(trained.schedule), trained.fit
    if res is not None:
        sched.update({"iterations_run": res.iterations_run, "iterations_planned": cfg.iterations,
                      "stopped_early": res.stopped_early, "best_iteration": res.best_iteration,
                      "batch_size": cfg.batch_size, "world_size": res.extra["world_size"],
                      "run_dir": shown_path(folder)})  # fmt: skip
        rec["img_per_s"] = round(res.img_per_s, 2)
        losses = [r["loss"] for r in res.log if "loss" in r and r["loss"] == r["loss"]]
        rec["final_loss"] = losses[-1] if losses else None
    rec.update({"metrics": {k: float(v) for k, v in metrics.items()}, "config": cfg.to_dict(), "schedule": sched,
                "wall_s": round(wall_s, 2), "data": {"synthetic": data.source["kind"] == "synthetic",
                "kind": data.source["kind"], "path": data.source["path"]}, "env": env_info(device),
                "untrained": untrained, "chance": chance,
                "n_queries": len(data.test) if data.test is not None else len(data.reid.query),
                "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})  # fmt: skip
    return rec


def run_experiment(
    name: str,
    profile: str = "smoke",
    data_root: str | os.PathLike | None = None,
    out_root: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    resume: bool | str = True,
    seed: int = 0,
    force: bool = False,
    runs_root: str | os.PathLike | None = None,
    progress: bool = True,
    weights: str | None = None,
    allow_synthetic: bool | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate experiment ``name`` with ``profile``; write and return its results record.

    The record goes to ``<out_root>/<profile>/<name>[.seed<k>].json`` (atomic) with the test metrics beside the
    same network's untrained score (same seed) and chance, the config, the seed, the schedule actually run, wall
    time, img/s, device, torch version, git commit and which data was used (real or synthetic, path relative to
    the data root). Synthetic data only for the smoke profile (``allow_synthetic`` None = by profile). An
    existing record is returned as is unless ``force`` -- or unless it is torn, or was computed on synthetic data
    while the real data is present now (then the run starts over). Checkpoints live in
    ``runs/<profile>/<name>[.seed<k>]``, locked while the run lasts, so a killed run resumes. ``resume``:
    ``True`` (default; the runner's policy, :func:`cdimlab.train.resume_checkpoint`'s ``"compatible"``: continue a
    checkpoint of the same recipe, else move the old files into ``old-<time>/`` and start over), ``"strict"``
    (``--resume``: continue, refuse another recipe), ``False`` (refuse a folder holding a checkpoint) or
    ``"fresh"`` (``--fresh``: start over, old files kept aside). The record says ``"resumed": true/false``.
    """
    import sys

    from cdimlab.train import lock_run, run_labels

    exp = get_experiment(name)
    path = result_path(name, profile, out_root, seed)
    cfg = replace(exp.config(profile), seed=seed, **(config_overrides or {}))  # validated before any file
    if weights and exp.backbone == "sketchanet" and "sketch_std" not in (config_overrides or {}):
        cfg = replace(cfg, sketch_std=1 / 255)  # step3 weights expect the official x - 250.42 input
    modes = {True: "compatible", False: False, "strict": True, "fresh": "fresh", "compatible": "compatible"}
    if resume not in modes:
        raise ValueError(f"resume must be one of {list(modes)}, got {resume!r}")
    mode = modes[resume]  # True: the runner's policy ("compatible": a stale checkpoint is moved aside, kept)
    dev = resolve_device(device)
    if path.is_file() and not force:
        try:  # a cached record is reused only when it is whole and not made on synthetic data now replaced
            cached = json.loads(path.read_text())
            metrics = cached.get("metrics") if isinstance(cached, dict) else None
            whole = isinstance(metrics, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())  # fmt: skip
        except (OSError, ValueError):
            cached, whole = None, False
        stale = False
        if whole and cached.get("data", {}).get("kind") == "synthetic":
            try:
                stale = not locate_dataset(exp.dataset, data_root, allow_synthetic=False).synthetic
            except FileNotFoundError:  # still no real data: the synthetic record stands
                stale = False
        if whole and not stale:
            return cached
        why = "was made on synthetic data, and real data is present now" if stale else "is torn or unreadable"
        print(f"note: the cached record {path} {why}; running {name} again", file=sys.stderr)
        mode = "fresh" if stale else mode  # a synthetic-data checkpoint must not continue on real data
    seed_everything(seed)
    folder, t0 = run_dir(name, profile, runs_root, seed), time.perf_counter()
    trains = exp.model != "hog" and not exp.eval_only_from
    with lock_run(folder, trains and int(os.environ.get("RANK", "0")) == 0):  # one run of a folder at a time
        data = load_data(exp, profile, data_root, seed, allow_synthetic, cfg)
        chance = chance_of(exp, data)
        untrained = untrained_score(exp, cfg, data, dev, weights)
        seed_everything(seed)  # the trained run starts from the weights the untrained score was measured on
        with run_labels(experiment=name, data=data.source["kind"]):  # kept in checkpoints, checked on resume
            trained = fit(exp, cfg, data, dev, folder, resume=mode, progress=progress, weights=weights,
                          profile=profile, runs_root=runs_root, data_root=data_root, out_root=out_root)  # fmt: skip
        metrics = trained.metrics if trained.model is None else evaluate(exp, trained.model, data, cfg, dev)
        record = make_record(exp, profile, cfg, trained, metrics, data, weights, folder, time.perf_counter() - t0,
                             dev, untrained, chance)  # fmt: skip
        record["resumed"] = bool(trained.fit is not None and trained.fit.extra.get("resumed_from"))
        write_record(path, record)
    return record
