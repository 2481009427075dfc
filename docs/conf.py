"""Sphinx configuration of the mtdlearn documentation.

Build (from the repository root, warnings as errors, as CI does)::

    sphinx-build -W -b html docs docs/_build/html

The gallery scripts in ``examples/`` (``plot_*.py``) are executed during the
build by sphinx-gallery at their default (quick) sizes, each in under a
minute.  ``MTDLEARN_FULL=1`` switches them to the paper's full sizes (hours).
``-D plot_gallery=0`` skips running the examples altogether.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout even without `pip install -e .`

import sphinx_gallery  # noqa: E402
from packaging.version import Version  # noqa: E402  (a dependency of Sphinx)

import mtdlearn  # noqa: E402

# -- project -----------------------------------------------------------------
project = "mtdlearn"
author = "the mtdlearn developers"
copyright = "the mtdlearn developers"  # noqa: A001 - Sphinx's name
release = mtdlearn.__version__
version = ".".join(release.split(".")[:2])

# -- general -----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
nitpicky = False
default_role = "literal"  # `x` in docstrings renders as code, never as a broken reference

# -- autodoc / autosummary / numpydoc -----------------------------------------
autosummary_generate = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- sphinx-gallery ------------------------------------------------------------
# The examples read MTDLEARN_FULL themselves (see the module docstring);
# report the mode in the build log so a slow build is not a surprise.
print(f"mtdlearn docs: MTDLEARN_FULL={os.environ.get('MTDLEARN_FULL', '0')!r}")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("mtdlearn",),
    "backreferences_dir": "gen_modules/backreferences",
    "reference_url": {"mtdlearn": None},
    "download_all_examples": False,
    "remove_config_comments": True,
}
# No sg_execution_times.rst in the source tree (each example page still
# reports its own running time).  The option exists from sphinx-gallery 0.18;
# older versions reject unknown keys.
if Version(sphinx_gallery.__version__) >= Version("0.18"):
    sphinx_gallery_conf["write_computation_times"] = False

# -- HTML ----------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Two-dimensional multi-target detection with scikit-learn conventions",
    "fixed_sidebar": True,
}
html_static_path = ["_static"]


# -- hooks ---------------------------------------------------------------------
def _skip_sklearn_members(app, what, name, obj, skip, options):
    """Document our own methods, including those inherited from
    BaseMTDEstimator, but not scikit-learn's (get_params, set_params,
    get_metadata_routing, ...): they are scikit-learn's API, documented there,
    and their docstrings refer to labels of scikit-learn's own documentation."""
    if (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_members)
