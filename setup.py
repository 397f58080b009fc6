"""Packaging beside pyproject.toml: the shipped notebooks and example photos as package data.

The repository keeps them where people look for them (notebooks/, data/); a wheel carries them
as siso_lib/_resources/notebooks and siso_lib/_resources/data, which siso_lib.io.locations finds
in an installed package (and falls back to the checkout's folders in an editable install).
"""

from setuptools import find_packages, setup

RESOURCES = {"siso_lib._resources.notebooks": "notebooks", "siso_lib._resources.data": "data"}

setup(
    packages=[*find_packages(include=["siso_lib", "siso_lib.*"]), *RESOURCES],
    package_dir={name: folder for name, folder in RESOURCES.items()},
    package_data={"siso_lib": ["memory_table.json"], "siso_lib._resources.notebooks": ["*.ipynb"],
                  "siso_lib._resources.data": ["*.png", "*.md"]},
)
