"""Training of binary neural networks: data, binarizers (incl. LNS), layers, model zoo, loop, export.

Layers of the package, each importing only those before it: ``quantizers`` -> ``lns`` ->
``binarizers`` (the registry by name) -> ``layers`` -> ``zoo`` -> ``checkpoint`` -> ``train`` /
``export``; docs/models.md and docs/training.md describe them.
"""
