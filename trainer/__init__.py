"""Training of binary neural networks: data, binarizers (incl. LNS), layers, model zoo, loop, export.

Layers of the package, each importing only those before it: ``quantizers`` -> ``lns`` ->
``binarizers`` (the registry by name) -> ``layers`` -> ``zoo`` -> ``checkpoint`` -> ``train`` /
``export``; around the loop: ``warmup`` (data-free LNS warm-up), ``distill`` and ``objective``
(the loss of a step), ``run_files``; beside it: ``paired_stats`` (pure Python) and ``diagnostics``.
docs/models.md and docs/training.md describe them.
"""
