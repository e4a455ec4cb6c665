"""Target backends, installed as ``edgekit.targets``: one package per target, registered in
``edgekit/registry.py``."""
