"""Sphinx configuration for the pyxs documentation."""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)  # autodoc imports pyxs from this checkout


def _version() -> str:
    # Read, not imported: the version is known even if pyxs fails to import.
    with open(os.path.join(TOP, "pyxs", "__init__.py"),
              encoding="utf-8") as handle:
        match = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M)
    if match is None:
        raise RuntimeError("no __version__ in pyxs/__init__.py")
    return match.group(1)


project = "pyxs"
author = "the pyxs authors"
copyright = "the pyxs authors; LGPL-3.0-or-later"
release = _version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

# No network access while building: intersphinx is not enabled.
nitpicky = False

master_doc = "index"
root_doc = "index"
exclude_patterns = ["_build", "_static"]  # _static: included files
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"

html_theme = "alabaster"
html_theme_options = {
    "description": "A pure-Python XenStore client",
    "fixed_sidebar": True,
}
html_static_path: list = []
