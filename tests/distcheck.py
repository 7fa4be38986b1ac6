"""Checks what ``python -m build`` made: ``python tests/distcheck.py DIR``.

The wheel must carry the package data pyxs needs at run time (py.typed,
the hypervisor stub's C source) and the licenses; the sdist must carry
every file of the checkout that git tracks, so a new test helper or doc
cannot be left out of it. Exits 1 naming what is missing. tests/run.sh
runs it; it is not a test module.
"""

import glob
import os
import subprocess
import sys
import tarfile
import zipfile
from typing import List, Optional, Set

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Files the wheel must hold, besides the modules.
WHEEL_FILES = ["pyxs/py.typed", "pyxs/testing/xenstub.c"]
LICENSES = ["COPYING", "COPYING.LESSER"]
#: Tracked files the sdist leaves out on purpose.
NOT_IN_SDIST = {".gitignore"}


def only(pattern: str) -> str:
    found = glob.glob(pattern)
    if len(found) != 1:
        sys.exit("distcheck: expected one %s, found %s" % (pattern, found))
    return found[0]


def check_wheel(path: str) -> List[str]:
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        info = only_dist_info(names)
        metadata = wheel.read(info + "METADATA").decode()
    problems = ["wheel lacks " + name for name in WHEEL_FILES
                if name not in names]
    problems += ["wheel lacks %slicenses/%s" % (info, name)
                 for name in LICENSES
                 if info + "licenses/" + name not in names]
    if "License-Expression: LGPL-3.0-or-later" not in metadata.splitlines():
        problems.append("wheel's METADATA has no License-Expression")
    if "Classifier: License ::" in metadata:
        problems.append("wheel's METADATA has a License classifier")
    return problems


def only_dist_info(names: Set[str]) -> str:
    tops = {name.split("/")[0] + "/" for name in names
            if name.split("/")[0].endswith(".dist-info")}
    if len(tops) != 1:
        sys.exit("distcheck: expected one .dist-info in the wheel, found %s"
                 % sorted(tops))
    return tops.pop()


def check_sdist(path: str) -> List[str]:
    with tarfile.open(path) as sdist:
        members = sdist.getnames()
    root = members[0].split("/")[0]
    held = {name[len(root) + 1:] for name in members}
    problems = ["sdist holds compiled " + name for name in sorted(held)
                if "__pycache__" in name or name.endswith(".pyc")]
    tracked = tracked_files()
    if tracked is None:
        print("distcheck: not a git checkout; sdist compared with nothing")
        return problems
    return problems + ["sdist lacks " + name for name in tracked
                       if name not in held and name not in NOT_IN_SDIST]


def tracked_files() -> Optional[List[str]]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=TOP, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.split()


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        sys.exit("usage: python tests/distcheck.py DIST_DIR")
    wheel = only(os.path.join(argv[1], "*.whl"))
    sdist = only(os.path.join(argv[1], "*.tar.gz"))
    problems = check_wheel(wheel) + check_sdist(sdist)
    for problem in problems:
        print("distcheck: " + problem)
    if problems:
        return 1
    print("distcheck: %s and %s hold what they must"
          % (os.path.basename(wheel), os.path.basename(sdist)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
