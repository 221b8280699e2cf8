"""The interface every backbone implements: a network whose intermediate feature maps ("taps") can be read.

Introduced in notebook 02 (backbones and taps). The paper's fusion module (``cdimlab.fusion``) needs, besides the
final-layer feature, the feature maps of one or more *mid* layers (``conv5`` of Sketch-a-Net, ``res5a``/``res5b`` of
ResNet-50, ``Mixed_7b`` of InceptionV3). Every backbone therefore lists its network as an ordered sequence of named
stages; :meth:`TappedBackbone.forward_taps` runs them once, in order, and keeps the maps whose names were asked for.
No FX tracing and no forward hooks: what you read is what runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

Stage = tuple[str, Callable[[Tensor], Tensor]]


class TappedBackbone(nn.Module):
    """Base class: a CNN whose named intermediate maps can be returned alongside its final feature.

    Subclasses set ``tap_names`` (network order), ``tap_channels``, ``final_dim``, ``input_size`` (H, W at the
    paper's size), ``in_channels`` and implement :meth:`stages`, which yields ``(name, fn)`` pairs in network order;
    the last stage must produce the final feature vector ``(B, final_dim)``. Stage names that are in ``tap_names``
    are the readable taps; other stage names are internal.
    """

    tap_names: tuple[str, ...] = ()
    tap_channels: dict[str, int]
    final_dim: int
    input_size: tuple[int, int]
    in_channels: int

    def stages(self) -> Iterator[Stage]:
        """Yield ``(name, fn)`` in network order; subclasses implement this."""
        raise NotImplementedError

    @property
    def backbone(self) -> TappedBackbone:
        """The backbone itself: every cdimlab net (backbone, EmbeddingNet, ReIDNet, attention net) has ``backbone``."""
        return self

    def embed(self, x: Tensor) -> Tensor:
        """The retrieval embedding: for a bare backbone its final feature (the shared model interface)."""
        return self(x)

    def check_taps(self, taps: Sequence[str]) -> tuple[str, ...]:
        """Validate requested tap names against :attr:`tap_names`; a ValueError lists the valid ones."""
        if isinstance(taps, str):
            taps = (taps,)
        taps = tuple(taps)
        unknown = [t for t in taps if t not in self.tap_names]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no tap(s) {unknown}; valid tap names are {list(self.tap_names)}"
            )
        return taps

    _check_taps = check_taps  # old name, kept for subclasses written against it

    def forward_taps(self, x: Tensor, taps: Sequence[str] = ()) -> dict[str, Tensor]:
        """Run the network once; return each requested tap ``(B, C, H, W)`` and ``"final"`` ``(B, final_dim)``.

        The whole network always runs, because the fusion module always needs the final feature as well.
        """
        wanted = set(self.check_taps(taps))
        out: dict[str, Tensor] = {}
        for name, fn in self.stages():
            x = fn(x)
            if name in wanted:
                out[name] = x
        out["final"] = x
        return out

    def forward(self, x: Tensor) -> Tensor:
        """The final-layer feature ``(B, final_dim)`` (``fc7`` / ``pool5`` / ``pool``)."""
        return self.forward_taps(x, ())["final"]

    @torch.no_grad()
    def tap_shapes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, ...]]:
        """Shapes ``(C, H, W)`` of every tap (and ``"final"``: ``(final_dim,)``) for one image of ``input_size``.

        Runs a dummy forward on a single zero image under ``no_grad`` in eval mode (so BatchNorm running
        statistics are untouched), then restores the training flags. The fusion module uses this to size its
        flatten / FC dimensions. Defaults to the backbone's :attr:`input_size`.
        """
        size = pair(input_size if input_size is not None else self.input_size)
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        flags = {m: m.training for m in self.modules()}
        self.eval()
        try:
            x = torch.zeros(1, self.in_channels, *size, device=device, dtype=dtype)
            feats = self.forward_taps(x, self.tap_names)
        except RuntimeError as err:
            raise ValueError(
                f"{type(self).__name__} cannot run on a {self.in_channels}x{size[0]}x{size[1]} input ({err}); "
                "use a larger input_size"
            ) from err
        finally:
            for m, flag in flags.items():
                m.training = flag
        return {k: tuple(v.shape[1:]) for k, v in feats.items()}


def pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``225 -> (225, 225)``; ``(256, 128) -> (256, 128)``; anything else is a ValueError."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (H, W), got {size!r}")
    return size  # type: ignore[return-value]
