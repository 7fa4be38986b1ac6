"""The one piece of pyxs's packaging that pyproject.toml cannot say.

Everything else is in pyproject.toml. The license can be stated there only
as an SPDX string (``license = "..."``), which setuptools reads from 77 on
and older setuptools refuses, or as a table, which setuptools 77 and later
deprecate. Python 3.8's newest setuptools is 75.3, so pyproject.toml lists
the license as dynamic and this file gives it in the form the running
setuptools understands: a License-Expression from 77 on, the License field
before.
"""

import setuptools

LICENSE = "LGPL-3.0-or-later"
LICENSE_FILES = ["COPYING", "COPYING.LESSER"]


def _major(version: str) -> int:
    return int(version.split(".")[0])


if _major(setuptools.__version__) >= 77:
    setuptools.setup(license_expression=LICENSE, license_files=LICENSE_FILES)
else:
    setuptools.setup(license=LICENSE, license_files=LICENSE_FILES)
