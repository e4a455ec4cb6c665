"""Package discovery with the targets/ -> edgekit.targets mapping (pyproject.toml holds the rest).

Subpackages are found, not listed, so a new target package needs no packaging edit.
"""
from setuptools import find_packages, setup

packages = [p for p in find_packages(include=["edgekit", "edgekit.*"])]
packages += ["edgekit.targets"] + [f"edgekit.targets.{p}" for p in find_packages("targets")]
setup(packages=packages)
