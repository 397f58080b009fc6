"""The judges: frozen feature networks that score a generated image against the subject photo.

* `dino.py`: DINOv2 (timm) global features, `DinoFeatures`.
* `ir.py`: the image-retrieval ("IR") network of the paper (an open_clip ViT-H/14 tower with a
  projection head, hand-downloaded weights), `IRFeatures`.
* `preprocess.py`: the differentiable resize/crop/normalise each network needs.

They know nothing about the generator that made the image; `losses.py` combines them.
"""
