"""Datasets: QMUL FG-SBIR V1, ReID (Market-1501, DukeMTMC-reID, CUHK03), synthetic stand-ins, GPU-resident banks.

Introduced in notebook 00 (datasets) and 02-03 (training data). See docs/ARCHITECTURE.md ("Data") for the contract.
"""

from .gpu import ImageBank, norm_stats, reid_bank, sbir_bank
from .qmul import QMUL_CATEGORIES, QMULSplit, load_qmul_v1, train_val_split
from .registry import DATASETS, SYNTH_DEFAULTS, DatasetLocation, SynthDefaults, locate_dataset
from .reid import REID_DATASETS, ReIDData, decode_images, load_reid, parse_market_name, read_image
from .samplers import EpochSampler, TripletSampler
from .synthetic import synthetic_reid, synthetic_sbir
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SKETCH_MEAN,
    SKETCH_NORM_MEAN,
    SKETCH_NORM_STD,
    center_crop,
    random_crop_flip,
    ten_crop_views,
)

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "QMUL_CATEGORIES",
    "REID_DATASETS",
    "SKETCH_MEAN",
    "SKETCH_NORM_MEAN",
    "SKETCH_NORM_STD",
    "SYNTH_DEFAULTS",
    "DatasetLocation",
    "EpochSampler",
    "ImageBank",
    "QMULSplit",
    "ReIDData",
    "SynthDefaults",
    "TripletSampler",
    "center_crop",
    "decode_images",
    "load_qmul_v1",
    "load_reid",
    "norm_stats",
    "locate_dataset",
    "parse_market_name",
    "random_crop_flip",
    "read_image",
    "reid_bank",
    "sbir_bank",
    "synthetic_reid",
    "synthetic_sbir",
    "ten_crop_views",
    "train_val_split",
]
