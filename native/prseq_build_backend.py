"""PEP 517 build backend: setuptools, plus the cffi build of the native core.

setuptools only takes `cffi_modules` as a setup() keyword; this backend
passes it without a setup.py, so the project root stays as the design card
fixes it.
"""

from __future__ import annotations

from setuptools import build_meta as _meta

CFFI_MODULES = ["native/build.py:ffibuilder"]


class _Backend(_meta._BuildMetaBackend):
    def run_setup(self, setup_script: str = "setup.py") -> None:
        import setuptools

        setuptools.setup(cffi_modules=CFFI_MODULES)


_BACKEND = _Backend()
get_requires_for_build_wheel = _BACKEND.get_requires_for_build_wheel
get_requires_for_build_sdist = _BACKEND.get_requires_for_build_sdist
get_requires_for_build_editable = _BACKEND.get_requires_for_build_editable
prepare_metadata_for_build_wheel = _BACKEND.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _BACKEND.prepare_metadata_for_build_editable
build_wheel = _BACKEND.build_wheel
build_sdist = _BACKEND.build_sdist
build_editable = _BACKEND.build_editable
