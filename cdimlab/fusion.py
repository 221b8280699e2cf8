"""The paper's idea in one place: fuse mid-level feature maps with the final-layer feature (Eq. 1, Fig. 3c).

Introduced in notebook 04 (the fusion module), used by every training notebook. Recipe::

    f_mid   = pool(f_tap1) ++ pool(f_tap2) ++ ...     pool = flatten (pose-aligned FG-SBIR, Eq. 1) | GAP (ReID)
    f_mid   = FC(f_mid)                               optional (ReID: 1024); a plain Linear, no ReLU / BatchNorm
    f_final = [L2(f_mid), L2(f_last)]                 L2 of each part when l2_parts (FG-SBIR), raw for ReID
                                                      (several flattened taps, no FC: L2 of each tap)

The whole network is trained end to end through the concatenated embedding, so the mid layer receives a direct
gradient from the loss (deep supervision). ``FusionConfig()`` (no taps) is the paper's "Vanilla" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdimlab.models.base import TappedBackbone

POOLINGS = ("flatten", "gap")
# tap-name prefix -> the paper's name of that backbone's final layer (for FusionConfig.describe)
_FINAL_NAMES = {"conv": "fc7", "res": "pool5", "Mixed": "pool"}


@dataclass(frozen=True)
class FusionConfig:
    """Which taps to fuse and how (notebook 04). ``taps=()`` is Vanilla: the final feature alone.

    ``pooling``: ``"flatten"`` keeps the spatial layout (FG-SBIR), ``"gap"`` averages it away (ReID).
    ``reduce_dim``: output size of a Linear layer applied to the concatenated pooled taps (None: no FC).
    ``l2_parts``: L2-normalise the mid part and the final part separately before concatenating.
    """

    taps: tuple[str, ...] = ()
    pooling: str = "flatten"
    reduce_dim: int | None = None
    l2_parts: bool = True

    def __post_init__(self) -> None:
        taps = (self.taps,) if isinstance(self.taps, str) else tuple(self.taps)
        object.__setattr__(self, "taps", taps)
        if self.pooling not in POOLINGS:
            raise ValueError(f"FusionConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if len(set(taps)) != len(taps):
            raise ValueError(f"FusionConfig.taps has duplicates: {taps}")
        if "final" in taps:
            raise ValueError("FusionConfig.taps lists mid-level layers; the final feature is always fused")
        if self.reduce_dim is not None and (not isinstance(self.reduce_dim, int) or self.reduce_dim < 1):
            raise ValueError(
                f"FusionConfig.reduce_dim must be None or a positive int, got {self.reduce_dim!r}"
            )

    @property
    def vanilla(self) -> bool:
        """True when no mid-level layer is fused (the paper's baseline)."""
        return not self.taps

    def describe(self, final_name: str | None = None) -> str:
        """Short human label, e.g. ``"conv5 flatten + fc7"`` or ``"res5a+res5b gap -> FC1024 + pool5"``.

        ``final_name`` defaults to the paper's name guessed from the tap names (fc7 / pool5 / pool).
        """
        guess = [v for k, v in _FINAL_NAMES.items() if self.taps and self.taps[0].startswith(k)]
        final = final_name or (guess[0] if guess else "final")
        if self.vanilla:
            return f"Vanilla ({final_name or 'final layer'} only)"
        label = f"{'+'.join(self.taps)} {self.pooling}"
        if self.reduce_dim is not None:
            label += f" -> FC{self.reduce_dim}"
        return f"{label} + {final}" + ("" if self.l2_parts else " (no L2)")


def _l2(x: Tensor) -> Tensor:
    """L2-normalise rows in float32 (safe under bf16 autocast)."""
    return F.normalize(x.float(), p=2.0, dim=1, eps=1e-12)


class MidLevelFusion(nn.Module):
    """taps -> pool -> concat taps -> [Linear] -> [L2] -> concat with the [L2] final feature.

    ``tap_channels`` and ``tap_sizes`` (H, W of each tap map at the training input size) size the flatten and the
    Linear layer; ``out_dim`` is the embedding size. Introduced in notebook 04.
    """

    def __init__(
        self,
        tap_channels: dict[str, int],
        tap_sizes: dict[str, tuple[int, int]],
        final_dim: int,
        cfg: FusionConfig,
    ) -> None:
        super().__init__()
        missing = [
            t for t in cfg.taps if t not in tap_channels or (cfg.pooling == "flatten" and t not in tap_sizes)
        ]
        if missing:
            raise ValueError(
                f"MidLevelFusion: no channels/size given for tap(s) {missing}; known {list(tap_channels)}"
            )
        self.cfg = cfg
        self.tap_sizes = {t: tuple(tap_sizes[t]) for t in cfg.taps if t in tap_sizes}
        self.pooled_dims = {t: _pooled_dim(tap_channels[t], tap_sizes.get(t), cfg.pooling) for t in cfg.taps}
        pooled = sum(self.pooled_dims.values())
        self.reduce = nn.Linear(pooled, cfg.reduce_dim) if cfg.taps and cfg.reduce_dim is not None else None
        self.mid_dim = 0 if not cfg.taps else (cfg.reduce_dim or pooled)
        self.final_dim = final_dim
        self.out_dim = self.mid_dim + final_dim

    def _pool(self, name: str, fmap: Tensor) -> Tensor:
        """Flatten (C*H*W in C, H, W order) or GAP (C) one tap map; checks the flatten size."""
        if self.cfg.pooling == "gap":
            return fmap.mean(dim=(2, 3))
        if tuple(fmap.shape[2:]) != self.tap_sizes[name]:
            raise ValueError(
                f"tap {name} is {tuple(fmap.shape[2:])} but the fusion was built for {self.tap_sizes[name]}: "
                "flatten fusion fixes the input size; build the model with the input size you feed it"
            )
        return fmap.flatten(1)

    def parts(self, taps: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"mid": (B, mid_dim), "final": (B, final_dim)}`` after pooling/FC/L2, before concatenation.

        Vanilla configs have no ``"mid"`` key.
        """
        final = taps["final"]
        out = {"final": _l2(final) if self.cfg.l2_parts else final.float()}
        if self.cfg.taps:
            pooled = [self._pool(t, taps[t]) for t in self.cfg.taps]
            if self.reduce is None and self.cfg.l2_parts and len(pooled) > 1:
                # several taps without FC (Table 7 "conv4 + conv5"): L2 each tap on its own, so that a large
                # map (conv4: 57,600 values) does not drown a small one (conv5: 12,544); docs/DEVIATIONS.md
                out["mid"] = torch.cat([_l2(p) for p in pooled], dim=1)
                return out
            mid = torch.cat(pooled, dim=1)
            if self.reduce is not None:
                mid = self.reduce(mid)
            out["mid"] = _l2(mid) if self.cfg.l2_parts else mid.float()
        return out

    def forward(self, taps: dict[str, Tensor]) -> Tensor:
        """The fused embedding ``(B, out_dim)``: ``[mid, final]`` (Vanilla: ``final``), float32."""
        p = self.parts(taps)
        return torch.cat([p["mid"], p["final"]], dim=1) if "mid" in p else p["final"]


def _pooled_dim(channels: int, size: tuple[int, int] | None, pooling: str) -> int:
    """Length of one pooled tap: C*H*W for flatten, C for GAP."""
    return channels if pooling == "gap" else channels * size[0] * size[1]  # type: ignore[index]


def _fusion_inputs(backbone: TappedBackbone, cfg: FusionConfig, input_size=None) -> tuple[dict, dict]:
    """``tap_channels`` and ``tap_sizes`` (H, W) of ``cfg``'s taps on ``backbone`` at ``input_size``."""
    backbone.check_taps(cfg.taps)
    shapes = backbone.tap_shapes(input_size) if cfg.pooling == "flatten" and cfg.taps else {}
    return backbone.tap_channels, {t: tuple(shapes[t][1:]) for t in cfg.taps if t in shapes}


def build_fusion(
    backbone: TappedBackbone, cfg: FusionConfig, input_size: int | tuple[int, int] | None = None
) -> MidLevelFusion:
    """A :class:`MidLevelFusion` sized for ``backbone`` at ``input_size`` (default: the backbone's)."""
    channels, sizes = _fusion_inputs(backbone, cfg, input_size)
    return MidLevelFusion(channels, sizes, backbone.final_dim, cfg)


def fusion_dim(
    backbone: TappedBackbone, cfg: FusionConfig, input_size: int | tuple[int, int] | None = None
) -> int:
    """Embedding size of ``cfg`` on ``backbone`` (e.g. 12,800 for the FG-SBIR paper config at 225).

    The fusion is built on the meta device, so even a huge flatten + FC layer costs no memory.
    """
    channels, sizes = _fusion_inputs(backbone, cfg, input_size)
    with torch.device("meta"):
        return MidLevelFusion(channels, sizes, backbone.final_dim, cfg).out_dim


class EmbeddingNet(nn.Module):
    """Backbone + :class:`MidLevelFusion` -> the embedding trained with the triplet loss (notebook 02).

    Works with channels_last inputs and under bf16 autocast (the L2 normalisation runs in float32).
    """

    def __init__(self, backbone: TappedBackbone, cfg: FusionConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.fusion = build_fusion(backbone, cfg)
        self.out_dim = self.fusion.out_dim

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The backbone's tap maps used by the fusion plus ``"final"`` (for visualisation)."""
        return self.backbone.forward_taps(x, self.cfg.taps)

    def parts(self, x: Tensor) -> dict[str, Tensor]:
        """The embedding's parts ``{"mid", "final"}`` before concatenation."""
        return self.fusion.parts(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        """Embedding ``(B, out_dim)``."""
        return self.fusion(self.features(x))

    def embed(self, x: Tensor) -> Tensor:
        """Retrieval embedding ``(B, out_dim)`` (the shared model interface; the same as ``forward``)."""
        return self(x)


class ReIDNet(nn.Module):
    """:class:`EmbeddingNet` + an identity classifier, trained with cross-entropy (notebook 03).

    ``forward`` returns logits for training; ``embed`` returns the embedding used for retrieval.
    """

    def __init__(self, backbone: TappedBackbone, cfg: FusionConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.embedder = EmbeddingNet(backbone, cfg)
        self.out_dim = self.embedder.out_dim
        self.classifier = nn.Linear(self.out_dim, num_classes)

    @property
    def backbone(self) -> TappedBackbone:
        """The embedder's backbone."""
        return self.embedder.backbone

    def embed(self, x: Tensor) -> Tensor:
        """Retrieval embedding ``(B, out_dim)``."""
        return self.embedder(x)

    # Where a saved ReIDNet state dict keeps the backbone and the class count (the only place that knows).
    BACKBONE_PREFIX = "embedder.backbone."
    CLASSIFIER_WEIGHT = "classifier.weight"

    @classmethod
    def num_classes_in(cls, state: dict[str, Tensor]) -> int:
        """The number of identities a saved ReIDNet state dict was trained on."""
        if cls.CLASSIFIER_WEIGHT not in state:
            raise ValueError(f"state dict has no {cls.CLASSIFIER_WEIGHT!r}: it is not a ReIDNet's")
        return int(state[cls.CLASSIFIER_WEIGHT].shape[0])

    @classmethod
    def backbone_state(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The backbone's part of a saved ReIDNet state dict, with the backbone's own key names."""
        n = len(cls.BACKBONE_PREFIX)
        return {k[n:]: v for k, v in state.items() if k.startswith(cls.BACKBONE_PREFIX)}

    def forward(self, x: Tensor) -> Tensor:
        """Identity logits ``(B, num_classes)``."""
        return self.classifier(self.embedder(x))
