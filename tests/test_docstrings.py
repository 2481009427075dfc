"""Docstrings of the public API: numpydoc validation and runnable examples.

The public API is every class and function listed in the ``__all__`` of the
public modules of ``mtdlearn``, plus the public methods and properties (and
``__init__``) that our own classes define or inherit from another mtdlearn
class.  Methods inherited from scikit-learn (``get_params``,
``get_metadata_routing``, ...) are scikit-learn's to document.

``test_docstring_examples`` runs the examples of every module with doctest;
pytest turns warnings into errors, so an example that warns fails.
"""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import mtdlearn

numpydoc_validate = pytest.importorskip("numpydoc.validate")

# Public modules: every module and subpackage of the package no part of whose
# dotted name starts with an underscore (``__main__`` runs the command line on
# import and is skipped).
_ALL_MODULES = sorted(info.name for info in pkgutil.walk_packages(mtdlearn.__path__, "mtdlearn."))
PUBLIC_MODULES = ["mtdlearn"] + [
    name for name in _ALL_MODULES
    if not any(part.startswith("_") for part in name.split(".")[1:])]
DOCTEST_MODULES = ["mtdlearn"] + [name for name in _ALL_MODULES
                                  if name != "mtdlearn.__main__"]

# numpydoc error codes that fail the test (numpydoc.validate.ERROR_MSGS has
# the texts).  Not enforced: ES01 (extended summary), SA01 (See Also),
# RT02 (we name single return values), SS05 (a heuristic on the first
# word) and the purely typographic PR05, PR08, PR09, RT04, RT05, SA02-SA04,
# GL01, GL02.  RT01 never fires for functions that return None nor for
# properties and ``__init__`` (numpydoc checks for a value-returning
# ``return``); a missing ``__init__`` docstring is GL08 only when the class
# docstring does not document the constructor's parameters.
CHECKED_CODES = frozenset({
    "GL03",  # double line break
    "GL05",  # tabs
    "GL06",  # unknown section
    "GL07",  # sections in the wrong order
    "GL08",  # no docstring
    "GL09",  # deprecation warning placement
    "GL10",  # reST directives need two colons
    "SS01",  # no summary
    "SS02",  # summary starts with a capital letter
    "SS03",  # summary ends with a period
    "SS06",  # summary fits on one line
    "PR01",  # parameter not documented
    "PR02",  # unknown parameter documented
    "PR03",  # parameters in the wrong order
    "PR04",  # parameter without a type
    "PR06",  # "integer"/"boolean"/"string" instead of int/bool/str
    "PR07",  # parameter without a description
    "PR10",  # "name: type" needs a space before the colon
    "RT01",  # no Returns section
    "RT03",  # return value without a description
    "YD01",  # no Yields section
})
# Module-level functions and classes also need an Examples section; methods
# may rely on their class's example.
TOP_LEVEL_CODES = CHECKED_CODES | {"EX01"}


def _own_members(cls):
    """Public methods and properties (and ``__init__``) of ``cls`` defined
    in mtdlearn, as ``(name, owner)``; the first owner in the MRO wins."""
    seen = set()
    for owner in cls.__mro__:
        if not owner.__module__.startswith("mtdlearn"):
            continue
        for name, member in vars(owner).items():
            if name in seen or (name.startswith("_") and name != "__init__"):
                continue
            if inspect.isfunction(member) or isinstance(member, property):
                seen.add(name)
                yield name, owner


def public_api():
    """``[(dotted name, kind)]`` with kind ``"top"`` (module-level function or
    class) or ``"member"`` (method, property, ``__init__``)."""
    objects, done = [], set()
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # __version__
            qualname = f"{obj.__module__}.{obj.__qualname__}"
            if qualname in done:
                continue  # re-exported by the package
            done.add(qualname)
            objects.append((qualname, "top"))
            if inspect.isclass(obj):
                for member_name, owner in _own_members(obj):
                    # a method shared through a base class is checked once
                    if (owner, member_name) in done:
                        continue
                    done.add((owner, member_name))
                    objects.append((f"{qualname}.{member_name}", "member"))
    return objects


PUBLIC_API = public_api()


def test_public_api_collected():
    names = {name for name, _ in PUBLIC_API}
    expected = {
        "mtdlearn.em.estimator.ApproxEMEstimator",
        "mtdlearn.em.estimator.ApproxEMEstimator.fit",  # from BaseMTDEstimator
        "mtdlearn.likelihood.m_step.m_step",
        "mtdlearn.basis.fourier_bessel.FourierBesselBasis.matrix",  # a property
        "mtdlearn.data.simulate.MeasurementTruth.__init__",  # written by @dataclass
        "mtdlearn.cli.commands.main",
        "mtdlearn.data.io.read_measurement",
    }
    assert expected <= names
    # the initializers' get_params comes from a private mixin: checked once
    assert sum(name.endswith("Initializer.get_params") for name in names) == 1
    assert not any(name.endswith((".set_output", ".get_metadata_routing")) for name in names)
    # the package's __all__ is covered through the defining modules
    for name in mtdlearn.__all__:
        obj = getattr(mtdlearn, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert f"{obj.__module__}.{obj.__qualname__}" in names


@pytest.mark.parametrize("name, kind", PUBLIC_API, ids=[name for name, _ in PUBLIC_API])
def test_numpydoc(name, kind):
    codes = TOP_LEVEL_CODES if kind == "top" else CHECKED_CODES
    result = numpydoc_validate.validate(name)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code in codes]
    assert not errors, f"{name} ({result['file']}:{result['file_line']}):\n" + "\n".join(errors)


@pytest.mark.parametrize("modname", DOCTEST_MODULES)
def test_docstring_examples(modname):
    plt = None
    if modname == "mtdlearn.plotting":
        matplotlib = pytest.importorskip("matplotlib")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    module = importlib.import_module(modname)
    try:
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE
                                 | doctest.ELLIPSIS)
    finally:
        if plt is not None:
            plt.close("all")
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
