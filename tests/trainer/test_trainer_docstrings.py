"""Every trainer module's docstring examples run (the top example of each module is a doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trainer

MODULES = sorted(info.name for info in pkgutil.iter_modules(trainer.__path__, prefix="trainer."))


def test_every_trainer_module_is_covered() -> None:
    assert len(MODULES) >= 15 and "trainer.train" in MODULES and "trainer.quantizers" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable docstring example"
