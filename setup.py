"""Packaging for pyxs, a pure-Python XenStore client."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="utf-8") as handle:
        return handle.read()


VERSION = re.search(r'^__version__ = "([^"]+)"', read("pyxs/__init__.py"),
                    re.M).group(1)

setup(
    name="pyxs",
    version=VERSION,
    description="Pure Python XenStore client: complete, thread-safe, "
                "testable without Xen",
    long_description=read("README.rst"),
    long_description_content_type="text/x-rst",
    license="LGPL-3.0-or-later",
    packages=find_packages(include=["pyxs", "pyxs.*"]),
    package_data={"pyxs.testing": ["xenstub.c"]},
    python_requires=">=3.8",
    install_requires=[],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=2", "hypothesis>=6"],
        "docs": ["sphinx>=5"],
        "dev": ["pytest>=7", "pytest-xdist>=2", "hypothesis>=6", "sphinx>=5",
                "mypy",
                "ruff"],
    },
    entry_points={
        "console_scripts": ["pyxs = pyxs.cli:main"],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: System Administrators",
        "Intended Audience :: Developers",
        "License :: OSI Approved :: GNU Lesser General Public License v3 "
        "or later (LGPLv3+)",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: System :: Operating System Kernels",
        "Framework :: Pytest",
    ],
)
