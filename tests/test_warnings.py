"""Warnings are signals: the test configuration turns deprecations and UserWarnings into errors."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning, UserWarning])
def test_an_unexpected_warning_fails_the_test(category: type[Warning]) -> None:
    """pyproject.toml's filters raise them, so no test passes with one it does not expect."""
    with pytest.raises(category):
        warnings.warn(f"an unexpected {category.__name__}", category, stacklevel=1)
