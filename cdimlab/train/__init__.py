"""Training and evaluation: the two fit loops of the paper, their checkpoints and the evaluation protocols.

Introduced in notebook 02 (training FG-SBIR) and notebook 03 (training ReID). One screen per concern:

* :mod:`~cdimlab.train.config` -- :class:`TrainConfig` (the recipe), :class:`FitResult`, amp / optimiser helpers
* :mod:`~cdimlab.train.distributed` -- torchrun / DDP plumbing (no-ops for one process)
* :mod:`~cdimlab.train.checkpoint` -- run-folder files, RNG state, and the one resume decision
* :mod:`~cdimlab.train.loop` -- :class:`TrainLoop`, the machinery both loops share
* :mod:`~cdimlab.train.runfolder` -- the run-folder lock, stale temp files, old runs moved aside
* :mod:`~cdimlab.train.fit` -- :func:`fit_triplet` (FG-SBIR) and :func:`fit_classifier` (ReID)
* :mod:`~cdimlab.train.evaluate` -- :func:`embed_images`, :func:`evaluate_sbir`, :func:`evaluate_reid`

Dataset banks live in :mod:`cdimlab.data.gpu` and learning curves in :mod:`cdimlab.viz.plots`; both names are
re-exported here because notebooks and older code import them from ``cdimlab.train``.
"""

from cdimlab.data.gpu import reid_bank, sbir_bank
from cdimlab.train.checkpoint import (
    BEST,
    CHECKPOINT,
    LOG,
    RESUMABLE_CHANGES,
    RESUME_MODES,
    CheckpointError,
    best_weights_path,
    check_identity,
    config_mismatch,
    describe_model,
    load_best_weights,
    load_checkpoint,
    load_verified,
    read_log,
    resume_checkpoint,
    run_config,
    run_labels,
    save_verified,
    write_log_csv,
)
from cdimlab.train.config import (
    FitResult,
    TrainConfig,
    auto_flag,
    autocast,
    make_optimizer,
    make_scheduler,
)
from cdimlab.train.distributed import DistInfo, init_distributed, shutdown_distributed
from cdimlab.train.evaluate import (
    SBIR_VIEWS,
    ReIDBanks,
    embed_images,
    evaluate_reid,
    evaluate_sbir,
    reid_eval_banks,
    sbir_distances,
)
from cdimlab.train.fit import fit_classifier, fit_triplet
from cdimlab.train.loop import TrainingInterrupted, TrainLoop
from cdimlab.train.runfolder import RunLockedError, lock_run
from cdimlab.viz.plots import plot_learning_curves

__all__ = [
    "BEST",
    "CHECKPOINT",
    "LOG",
    "RESUMABLE_CHANGES",
    "RESUME_MODES",
    "SBIR_VIEWS",
    "CheckpointError",
    "DistInfo",
    "FitResult",
    "ReIDBanks",
    "RunLockedError",
    "TrainConfig",
    "TrainLoop",
    "TrainingInterrupted",
    "auto_flag",
    "autocast",
    "best_weights_path",
    "check_identity",
    "config_mismatch",
    "describe_model",
    "embed_images",
    "evaluate_reid",
    "evaluate_sbir",
    "fit_classifier",
    "fit_triplet",
    "init_distributed",
    "load_best_weights",
    "load_checkpoint",
    "load_verified",
    "lock_run",
    "make_optimizer",
    "make_scheduler",
    "plot_learning_curves",
    "read_log",
    "reid_bank",
    "reid_eval_banks",
    "resume_checkpoint",
    "run_config",
    "run_labels",
    "save_verified",
    "sbir_bank",
    "sbir_distances",
    "shutdown_distributed",
    "write_log_csv",
]
