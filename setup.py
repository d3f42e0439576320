"""The one compiled module, gateway/media/_dsp.c (issue 19): optional, so an install without a
C compiler still works, on the numpy path (gateway/media/native.py says which is in use)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway.media._dsp",
            ["gateway/media/_dsp.c"],
            extra_compile_args=["-O3", "-Wno-psabi"],  # psabi: a static helper returns a vector
            optional=True,
        )
    ]
)
