"""Build the compiled part of the Hollow core; all metadata lives in pyproject.toml.

setuptools merges ``ext_modules`` from here with the ``[project]`` table of pyproject.toml, so
``pip install -e .`` (run by scripts/bootstrap) compiles ``loosely.hollow.core._native`` with the system
C compiler.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "loosely.hollow.core._native",
            sources=["src/loosely/hollow/core/_native.c"],
            depends=["src/loosely/hollow/core/_bits.h"],  # shared with _writer.c: bit packing and Hollow's hashes
            extra_compile_args=[
                "-O3",
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
                "-Wno-cast-function-type",
            ],
        ),
        # the write engine's per-record loops and the object mapper's compiled writers; see the file's header
        Extension(
            "loosely.hollow.core._writer",
            sources=["src/loosely/hollow/core/_writer.c"],
            depends=["src/loosely/hollow/core/_bits.h"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
        ),
        # the command line's hot loops (lines -> records, records -> kcat text); see the file's header
        Extension(
            "loosely.clients._fast",
            sources=["src/loosely/clients/_fast.c"],
            extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
        ),
        # the built-in views' per-record loop (count, latest value); see the file's header
        Extension(
            "loosely.views._kernel",
            sources=["src/loosely/views/_kernel.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
        ),
        # the produce validator's record walk; see the file's header
        Extension(
            "loosely.protocol._recwalk",
            sources=["src/loosely/protocol/_recwalk.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
        ),
    ]
)
