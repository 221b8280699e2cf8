"""cdimlab: the companion package of the course on "The Devil is in the Middle" (Yu et al.).

Mid-level feature fusion for cross-domain instance matching (FG-SBIR: sketch -> photo;
person ReID: camera -> camera). Every notebook cell that computes something calls this package.
"""

__version__ = "0.1.0"
