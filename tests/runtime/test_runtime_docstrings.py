"""The examples at the top of every module of formats/ and runtime/ run as written (doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import formats
import runtime

MODULES = sorted(
    f"{package.__name__}.{info.name}"
    for package in (formats, runtime)
    for info in pkgutil.iter_modules(package.__path__)
    if not info.ispkg
)


def test_modules_were_found():
    assert {
        "formats.tflite",
        "formats.metadata",
        "runtime.engines",
        "runtime.record",
        "runtime.verify",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
