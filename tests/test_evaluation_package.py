"""The package face `jobs/evaluation/__init__.py`: callers use `from jobs import evaluation as ev; ev.name(...)`,
so it must keep exposing every public name of each module it gathers."""
import importlib

import pytest

from jobs import evaluation


@pytest.mark.parametrize("module", ["baselines", "splits", "metrics"])
def test_package_face_reexports_every_public_name_of(module):
    ev = importlib.import_module(f"jobs.evaluation.{module}")
    public = [name for name, value in vars(ev).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == ev.__name__]
    assert public
    for name in public:
        assert name in evaluation.__all__ and getattr(evaluation, name) is getattr(ev, name), name
