"""Build step of the wheel: compile the contracts and ship their artifacts (``mbds_py/data/artifacts.json``),
so an installed ``mbds`` deploys without a Solidity compiler.  Everything else is in ``pyproject.toml``.

Building a wheel therefore needs what compiling needs in a checkout (``make setup``: Node and the npm
packages).  An editable install (``pip install -e .``) compiles nothing: it runs from the checkout, which
compiles on first use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class build_py_with_artifacts(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        sys.path.insert(0, str(ROOT))
        try:
            from mbds_py.toolchain import write_packaged_artifacts
        finally:
            sys.path.remove(str(ROOT))
        target = Path(self.build_lib) / "mbds_py" / "data" / "artifacts.json"
        doc = write_packaged_artifacts(target, ROOT)
        print(f"compiled {len(doc['contracts'])} contracts with solc {doc['solc']} into {target}")


setup(cmdclass={"build_py": build_py_with_artifacts})
