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


# (module, C source, OpenMP): the WaveRNN sample loop, and the GRU training steps (one thread per process)
KERNELS = [("rtclone.kernels.cpu._native", "kernels/cpu/native.c", True), ("rtclone.kernels.cpu._gru", "kernels/cpu/gru_train.c", False)]
ext_modules = [
    Extension(
        name,
        sources=[source],
        depends=["kernels/cpu/vmath.h"],
        extra_compile_args=["-O3", "-std=c11", "-fno-math-errno"] + (["-fopenmp"] if openmp else []),
        extra_link_args=["-fopenmp"] if openmp else [],
    )
    for name, source, openmp in KERNELS
    if os.environ.get("RTCLONE_NO_NATIVE") != "1" and os.path.exists(source)
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
