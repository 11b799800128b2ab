"""Build hook: setuptools needs setup.py to pass cffi_modules (not expressible in pyproject)."""

from setuptools import setup

setup(cffi_modules=["petra/_native_build.py:ffibuilder"])
