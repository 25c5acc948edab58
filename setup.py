"""Builds the optional native CPU kernels (rtclone.kernels.cpu._native: the WaveRNN sample loop;
rtclone.kernels.cpu._gru: the gate arithmetic of GRU training steps).

Everything else is declared in pyproject.toml. If the C compiler or AVX2 flags are missing the
build is skipped with a message and rtclone falls back to its torch reference at run time.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - an optional accelerator must not break install
            print(f"rtclone: native CPU kernel not built ({exc}); the torch fallback will be used", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"rtclone: native CPU kernel not built ({exc}); the torch fallback will be used", file=sys.stderr)


ext_modules = []
if os.environ.get("RTCLONE_NO_NATIVE") != "1" and os.path.exists("kernels/cpu/native.c"):
    ext_modules.append(
        Extension(
            "rtclone.kernels.cpu._native",
            sources=["kernels/cpu/native.c"],
            depends=["kernels/cpu/vmath.h"],
            extra_compile_args=["-O3", "-std=c11", "-fno-math-errno", "-fopenmp"],
            extra_link_args=["-fopenmp"],
        )
    )
if os.environ.get("RTCLONE_NO_NATIVE") != "1" and os.path.exists("kernels/cpu/gru_train.c"):
    ext_modules.append(
        Extension(
            "rtclone.kernels.cpu._gru",
            sources=["kernels/cpu/gru_train.c"],
            depends=["kernels/cpu/vmath.h"],
            extra_compile_args=["-O3", "-std=c11", "-fno-math-errno"],
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
