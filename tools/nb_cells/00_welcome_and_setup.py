"""Cells of notebooks/00_welcome_and_setup.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 00 · Welcome: cross-domain instance matching, and is this machine ready?

This course teaches, and reproduces, one idea from Yu, Chang, Song, Xiang and Hospedales,
*"The Devil is in the Middle: Exploiting Mid-level Representations for Cross-Domain Instance Matching"*
([arXiv 1711.08106](https://arxiv.org/abs/1711.08106)). Keep the paper open beside the notebooks: every table number
quoted here is from it.

**Learning goals.** After this notebook you can
1. say what *cross-domain instance matching* (CDIM) is, with its two examples: fine-grained sketch-based image
   retrieval (FG-SBIR) and person re-identification (ReID);
2. state the paper's idea in one sentence, and find where each step of it is taught in this course;
3. check your environment (versions, GPU, widgets, datasets) and know how to get the real data;
4. tell the three profiles apart: `smoke` (CPU, synthetic stand-ins, seconds: checks the pipeline), `laptop` (real
   data on a CPU, ~25 min a seed) and `full` (GPU, real data, the paper's recipe).
""",
    ),
    (
        "md",
        """
## Cross-domain instance matching

Two images of **the same object instance** come from **two different domains**, and we must find one from the other:

* **FG-SBIR** — a free-hand *sketch* of a shoe is the query; the gallery holds *photos* of shoes; the answer is the
  photo of *that very* shoe, not just any shoe. The QMUL datasets (shoes, chairs, handbags) pair each sketch with its
  photo. Sketch and photo are roughly **pose-aligned**: the toe is on the same side in both.
* **Person ReID** — a person seen by one camera is the query; the gallery holds people seen by other cameras; the
  answer is every image of *that* person. Here the two "domains" are two cameras with different viewpoints, light
  and pose — the images are **not aligned**.

In both tasks a network maps every image to an embedding vector, and retrieval ranks the gallery by distance to the
query. The usual embedding is the network's *final* layer (`fc7` of Sketch-a-Net, `pool5` of ResNet-50).

**The paper's idea:** the final layer is too abstract for telling *instances* apart. Take a *mid-level* feature map
as well (`conv5` for Sketch-a-Net, `res5a` + `res5b` for ResNet-50), pool it — **flatten** it when the domains are
pose-aligned (FG-SBIR), **global-average-pool** it when they are not (ReID) — L2-normalise it, and concatenate it
with the final feature. Train the whole thing end to end with the task's usual loss. That is all, and it adds
about 12 points of acc@1 on QMUL-Shoe (Table 3) and 8 points of mAP on Market-1501 (Table 4).
""",
    ),
    (
        "md",
        """
## The course map

| notebook | what you learn | smoke (CPU) |
|---|---|---|
| `00_welcome_and_setup` | CDIM, the paper's idea, environment check, getting the data | < 30 s |
| `01_metrics` | acc@K, CMC, mAP, multi-query — by hand, then with `cdimlab.metrics` | < 30 s |
| `02_vanilla_fgsbir` | Sketch-a-Net, the triplet loss, sampling from human annotations, training Vanilla | ~1 min |
| `03_vanilla_reid` | ResNet-50 identity classification, the `pool5` embedding, ranking and evaluation | ~1 min |
| `04_fusion_fgsbir` | `conv5` flatten + `fc7`, trained side by side with Vanilla | ~1 min |
| `05_fusion_reid` | `res5a`/`res5b` GAP + FC fused with `pool5`, side by side with Vanilla | ~1 min |
| `06_ablations` | which layers, which pooling, another backbone, attention only (Tables 7-11) | ~1 min |
| `07_explorer` | feature-map explorer, Grad-CAM for embeddings, ranked galleries | ~1 min |
| `08_reproduce_paper` | every result table 3-11: the paper's numbers beside ours | ~1 min |

Every notebook has a **parameters** cell. Left alone it runs the `smoke` profile: synthetic stand-in datasets
(written in the real datasets' file formats), small inputs, a few dozen iterations — enough to see every step
work, not enough to reproduce a number. Notebooks 04, 05 and 08 also take `profile = "laptop"`: they show the
committed real-data CPU results (`results/laptop/`, produced by `make laptop`). On a GPU with the real data, run a
notebook with `papermill notebooks/04_fusion_fgsbir.ipynb out.ipynb -p profile full`.
""",
    ),
    (
        "params",
        """
# Parameters (papermill: -p profile full). Literals only.
profile = "smoke"  # smoke | laptop | full  (smoke: CPU, synthetic stand-ins; laptop: real data, CPU; full: GPU)
seed = 0
data_root = None  # None: $CDIMLAB_DATA if set, else ./data
""",
    ),
    (
        "md",
        """
## Environment check

`cdimlab.course.environment_report` collects what the course needs to know about this machine: package versions,
whether PyTorch sees a CUDA GPU, whether interactive widgets can render, and which real datasets are present.
""",
    ),
    (
        "code",
        """
%matplotlib inline
import pandas as pd

from cdimlab import course

report = course.environment_report(data_root)
versions = pd.Series(report["packages"], name="version").to_frame()
versions
""",
    ),
    (
        "code",
        """
missing = [name for name, version in report["packages"].items() if version is None]
assert not missing, f"install the missing packages: pip install -e '.[dev]' (missing: {missing})"
assert int(report["packages"]["torch"].split(".")[0]) >= 2, "the course needs PyTorch 2.x"
print(f"python {report['python']} on {report['cpu_count']} CPU cores; device: {report['device']} ({report['device_name']})")
print("CUDA GPU:", "yes" if report["cuda"] else "no — the smoke profile is the right choice here")
print("interactive widgets:", "yes" if report["widgets"] else "no — notebook 07 will show static figures")
""",
    ),
    (
        "code",
        """
datasets = pd.Series(report["datasets"], name="status").to_frame()
print("data root:", report["data_root"])
datasets
""",
    ),
    (
        "code",
        """
profile = course.resolve_profile(profile)
assert profile in ("smoke", "laptop", "full")
print(f"This session runs the {profile!r} profile.")
""",
    ),
    (
        "md",
        """
## Getting the real data

Datasets never live in the repository; they go into `./data` (or wherever `$CDIMLAB_DATA` points):

* **QMUL FG-SBIR V1** (shoes, chairs, handbags) — public; `python data_scripts/download_qmul_v1.py --dest data/qmul_v1`
  downloads and verifies them.
* **Market-1501** — from its authors (research use only): `python data_scripts/prepare_reid.py market1501 --src
  <the zip you obtained> --dest data/reid/market1501` checks and unpacks it.
* **CUHK03-NP** (labelled and detected) — the original `cuhk-03.mat` + the new-protocol files, or the Market-style
  "CUHK03-NP" folders: `python data_scripts/prepare_reid.py cuhk03 --src <zip or folder> --dest data/reid/cuhk03`.
* **DukeMTMC-reID** has been **withdrawn by its creators**; it is supported only for users who already hold a copy.

When a dataset is missing, the smoke profile generates a small **synthetic stand-in** in the same file format, so
every loader and every notebook runs anyway. Let's look at both stand-ins.
""",
    ),
    (
        "code",
        """
sbir = course.sbir_data("shoes", data_root, seed=seed)
print(f"shoes: {'synthetic stand-in' if sbir.synthetic else 'real QMUL data'} at {sbir.path}")
print(f"train {len(sbir.train)} (+ {len(sbir.val)} validation), test {len(sbir.test)} sketch-photo pairs")
assert sbir.test.sketches.shape == sbir.test.photos.shape and sbir.test.sketches.dtype.name == "uint8"
course.show_pairs(sbir.test.sketches[:5], sbir.test.photos[:5], ("sketch", "photo"))
""",
    ),
    (
        "md",
        """
Row *i* of the sketches matches row *i* of the photos (here: photo **edge maps**, which is what Sketch-a-Net sees).
Now two cameras of a ReID dataset: each column is one identity, seen by two different cameras.
""",
    ),
    (
        "code",
        """
reid = course.reid_data("market1501", data_root, size=(128, 64), max_ids=None, decode_train=False)
print(f"market1501: {'synthetic stand-in' if reid.synthetic else 'real data'}; "
      f"{reid.data.num_train_pids} training identities, {len(reid.data.query)} queries, {len(reid.data.gallery)} gallery images")
cam_a, cam_b = course.two_camera_pairs(reid.data, n=5, size=(128, 64))
assert cam_a.shape == cam_b.shape and cam_a.shape[-1] == 3
course.show_pairs(cam_a, cam_b, ("camera A", "camera B"))
""",
    ),
    (
        "md",
        """
## How big are the real datasets? (the paper's Table 1)

The stand-in above is small on purpose (seconds of CPU). The real test sets are larger, and the size of the test
gallery sets the floor a model must clear: with N test photos, a random ranking finds the true photo first with
probability 1/N. The paper's Table 1:
""",
    ),
    (
        "code",
        """
table1 = course.paper_dataset_sizes()
assert (table1["train"] > 0).all() and (table1["test"] > 0).all()
table1
""",
    ),
    (
        "md",
        """
## Summary

* The paper: [arXiv 1711.08106](https://arxiv.org/abs/1711.08106); its Table 1 (above) gives the real test sizes.
* CDIM matches **instances** across **domains**: sketch → photo (FG-SBIR) and camera → camera (ReID).
* The paper fuses a **mid-level** feature map with the final feature: flatten for pose-aligned domains, GAP
  otherwise, L2-normalise, concatenate, train end to end.
* This machine's environment is checked above; without a GPU or the real data the course runs the `smoke` profile
  on synthetic stand-ins in the real formats. Numbers from `smoke` show that the code works, not what the paper found:
  real-data numbers come from the `laptop` profile (CPU) and the `full` profile (GPU), collected in notebook 08.

Next: **01_metrics** — how retrieval is scored.
""",
    ),
    ("exercises", ""),
]
