"""Index samplers of the two fit loops: FG-SBIR triplets and shuffled epochs over a ReID training set.

Introduced in notebook 02 (triplets) and notebook 03 (epochs). Samplers return CPU int64 index tensors only; the
images already live on the device in an :class:`cdimlab.data.ImageBank`. All randomness comes from the
``torch.Generator`` handed to ``sample``, so a checkpointed generator (and, for epochs, the sampler's state dict)
reproduces the stream after a resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from cdimlab.data.qmul import QMULSplit


class TripletSampler:
    """Draws (anchor sketch, positive photo, negative photo) index triplets, the official FG-SBIR recipe.

    ``"annotated"`` (shoes, chairs): anchor uniform; one of its annotated (pos, neg) pairs uniform; with probability
    ``easy_prob`` the negative is replaced by a random photo outside the sketch's candidate photos (an "easy"
    negative). ``"true_match"`` (handbags): pos = the true match (same index), neg = any other photo.
    ``"auto"``: annotated when any sketch has triplets, else true_match; in annotated mode a sketch without
    triplets falls back to true_match. All draws come from the ``generator`` given to ``sample`` (vectorised).
    """

    MODES = ("auto", "annotated", "true_match")

    def __init__(self, split: QMULSplit, easy_prob: float = 0.25, mode: str = "auto") -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if len(split) < 2:
            raise ValueError("TripletSampler needs at least 2 sketch/photo pairs")
        has_any = any(len(t) for t in split.triplets)
        if mode == "auto":
            mode = "annotated" if has_any else "true_match"
        if mode == "annotated" and not has_any:
            raise ValueError(
                f"mode='annotated' but {split.category}/{split.split} has no triplets; use 'true_match'"
            )
        self.mode, self.easy_prob, self.n = mode, float(easy_prob), len(split)
        counts = [len(t) for t in split.triplets] if mode == "annotated" else [0] * self.n
        self.counts = torch.tensor(counts, dtype=torch.long)
        m = max(1, max(counts))
        pairs = torch.zeros((self.n, m, 2), dtype=torch.long)
        outside = torch.ones((self.n, self.n), dtype=torch.bool)  # photos outside each sketch's candidates
        for i, c in enumerate(counts):
            if c:
                pairs[i, :c] = torch.from_numpy(split.triplets[i])
                outside[i, torch.from_numpy(np.unique(split.triplets[i]))] = False
            outside[i, i] = False
        self.pairs, self.outside = pairs, outside

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``batch_size`` triplets as three CPU int64 tensors (anchor, pos, neg); deterministic for a generator."""
        g, dev = generator, generator.device if generator is not None else torch.device("cpu")
        n, b = self.n, int(batch_size)
        anchor = torch.randint(0, n, (b,), generator=g, device=dev).cpu()
        u_pair = torch.rand(b, generator=g, device=dev).cpu()
        u_easy = torch.rand(b, generator=g, device=dev).cpu()
        r_other = torch.randint(0, n - 1, (b,), generator=g, device=dev).cpu()
        scores = torch.rand((b, n), generator=g, device=dev).cpu()
        # true-match draw (used in true_match mode and for sketches without triplets)
        pos = anchor.clone()
        neg = r_other + (r_other >= anchor).long()
        cnt = self.counts[anchor]
        ann = cnt > 0
        if ann.any():
            j = (u_pair * cnt.clamp(min=1)).long().clamp(max=self.pairs.shape[1] - 1)
            chosen = self.pairs[anchor, j]
            pos = torch.where(ann, chosen[:, 0], pos)
            neg = torch.where(ann, chosen[:, 1], neg)
            out = self.outside[anchor]
            easy = ann & (u_easy < self.easy_prob) & out.any(dim=1)
            easy_neg = scores.masked_fill(~out, -1.0).argmax(dim=1)
            neg = torch.where(easy, easy_neg, neg)
        return anchor, pos, neg


class EpochSampler:
    """Shuffled passes over ``n`` items, ``batch`` per rank per step; ``state`` (a dict kept in the checkpoint)
    holds the epoch, its permutation and the position, so a resumed run continues the same epoch.

    Under torchrun the ranks *partition* each global batch: every rank builds the same permutation of an epoch
    (from ``seed`` and the epoch number, no communication) and takes its own ``batch``-sized slice of the next
    ``batch * world`` positions, so within an epoch no two ranks see the same image and together they cover
    the set once. One process (``world=1``) is the same rule with one slice, its permutations drawn from the
    run's generator as before (so single-process records made earlier reproduce exactly).
    """

    def __init__(self, n: int, state: dict[str, Any], rank: int = 0, world: int = 1, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"EpochSampler needs n >= 1 items, got {n}")
        if not 0 <= rank < world:
            raise ValueError(f"EpochSampler needs 0 <= rank < world, got rank={rank}, world={world}")
        self.n, self.state, self.rank, self.world, self.seed = n, state, rank, world, seed

    def permutation(self, epoch: int, gen: torch.Generator | None = None) -> Tensor:
        """The order of ``epoch``: under torchrun the same on every rank (seeded by ``seed`` and ``epoch`` alone);
        for one process drawn from ``gen`` when given."""
        if self.world == 1 and gen is not None:
            return torch.randperm(self.n, generator=gen)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))

    def sample(self, batch: int, gen: torch.Generator | None = None) -> Tensor:
        """This rank's next ``batch`` indices; a new epoch starts when the current permutation is used up."""
        glob = []
        want = batch * self.world
        while want > 0:
            epoch, pos, perm = self.state.get("epoch", 0), self.state.get("pos", 0), self.state.get("perm")
            if perm is None or pos >= self.n:
                epoch = epoch + 1 if perm is not None else epoch
                perm, pos = self.permutation(epoch, gen), 0
            take = perm[pos : pos + want]
            glob.append(take)
            want -= len(take)
            self.state.update(epoch=epoch, perm=perm, pos=pos + len(take))
        return torch.cat(glob)[self.rank * batch : (self.rank + 1) * batch]


__all__ = ["EpochSampler", "TripletSampler"]
