"""Visualisation for the course (notebook 07 and the result plots of 02-08).

* :mod:`~cdimlab.viz.feature_maps` — read a tap, rank filters, draw maps of a sketch and its photo side by side.
* :mod:`~cdimlab.viz.explorer` — the interactive feature-map explorer (pure :func:`render` + ipywidgets wiring).
* :mod:`~cdimlab.viz.gradcam` — Grad-CAM for embeddings with a similarity target (``grad-cam`` package).
* :mod:`~cdimlab.viz.gallery` — ranked retrieval galleries with true matches framed.
* :mod:`~cdimlab.viz.plots` — training curves, acc@K / CMC curves, paper-vs-here bars, PCA of embeddings.

Every drawing function returns a ``matplotlib.figure.Figure`` made without pyplot (no ``plt.show()``, no backend
switch); in Jupyter a figure that is a cell's value is displayed inline.
"""

from cdimlab.viz.explorer import ExplorerState, FeatureMapExplorer, render
from cdimlab.viz.feature_maps import (
    activation_similarity,
    as_batch,
    feature_maps,
    figure_pixels,
    render_feature_maps,
    to_display,
    top_filters,
)
from cdimlab.viz.gallery import rank_of_true_match, ranked_rows, render_ranked_gallery
from cdimlab.viz.gradcam import (
    SimilarityTarget,
    embedding_gradcam,
    embedding_similarity,
    expose_tap,
    gradcam_reference,
    render_gradcam,
)
from cdimlab.viz.plots import (
    acc_at_k_curve,
    embedding_2d,
    pca_2d,
    plot_acc_at_k_curve,
    plot_cmc,
    plot_learning_curves,
    plot_paper_vs_here,
    plot_training_curves,
)

__all__ = [
    "ExplorerState",
    "FeatureMapExplorer",
    "SimilarityTarget",
    "acc_at_k_curve",
    "activation_similarity",
    "as_batch",
    "embedding_2d",
    "embedding_gradcam",
    "embedding_similarity",
    "expose_tap",
    "feature_maps",
    "figure_pixels",
    "gradcam_reference",
    "pca_2d",
    "plot_acc_at_k_curve",
    "plot_cmc",
    "plot_paper_vs_here",
    "plot_learning_curves",
    "plot_training_curves",
    "rank_of_true_match",
    "ranked_rows",
    "render",
    "render_feature_maps",
    "render_gradcam",
    "render_ranked_gallery",
    "to_display",
    "top_filters",
]
