"""siso_lib: SISO (single-image subject-driven generation, arXiv 2503.16025) for SDXL-Turbo.

From one photo of a subject, optimise a small LoRA so that SDXL draws that subject, by
generating an image with gradients and scoring it against the photo with DINOv2 and
image-retrieval features. See README.md for the command line and the notebooks.
"""

__version__ = "0.1.0"

from .config import SISOConfig  # noqa: E402

__all__ = ["SISOConfig", "__version__"]
