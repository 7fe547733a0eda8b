"""Build script for the native core: setuptools plus cffi's ``cffi_modules``.

Everything else (name, version, dependencies, packages) lives in
``pyproject.toml``; this file exists because ``cffi_modules`` is only
accepted as a ``setup()`` keyword. The extension is built against the
stable ABI (cffi marks it ``py_limited_api``), so one wheel serves every
CPython from 3.10 on. Only the core is built here: the benchmarks' native
loops (``native/bench.c``) are compiled on demand by ``benchmarks/native.py``,
so no installed package carries benchmark code.
"""

from setuptools import setup

setup(
    cffi_modules=["native/build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
