"""Build steps only; the metadata lives in pyproject.toml.

* ``scoresvc._core`` (numeric kernels, OpenMP) and ``scoresvc._wire`` (wire parsing
  and id lookups) from ``src/scoresvc/*.pyx`` (Cython 3). The build fails if they do
  not compile: there is no pure-Python fallback.
* ``scoresvc.v1`` message and service stubs (and ``.pyi``) generated from ``protos/``,
  with the ``.proto`` files themselves and ``scoresvc.protoset``, their descriptors
  with comments (source info), which server reflection serves (grpcurl ``describe``).

``SCORESVC_DEBUG=1`` turns bounds checks, wraparound and line tracing back on.
"""

import os
import shutil
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
PROTOS = ROOT / "protos"
STUBS_ROOT = ROOT / "src"
DESCRIPTOR_SET = STUBS_ROOT / "scoresvc" / "v1" / "scoresvc.protoset"
DEBUG = os.environ.get("SCORESVC_DEBUG", "") not in ("", "0")


def generate_stubs() -> None:
    """Compile every proto under protos/ into src/ (package path = proto path), and
    put the protos and their descriptor set (with comments) beside the stubs."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={STUBS_ROOT}",
        f"--pyi_out={STUBS_ROOT}",
        f"--grpc_python_out={STUBS_ROOT}",
        "--include_source_info",
        "--include_imports",
        f"--descriptor_set_out={DESCRIPTOR_SET}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(protos))
    for proto in protos:
        shutil.copyfile(PROTOS / proto, STUBS_ROOT / proto)


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "linetrace": DEBUG,
}


def extension(name: str) -> Extension:
    return Extension(
        f"scoresvc.{name}",
        [f"src/scoresvc/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []),
        extra_compile_args=["-O3", "-fopenmp"] + (["-O0", "-g"] if DEBUG else []),
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=cythonize([extension("_core"), extension("_wire")], compiler_directives=directives),
    cmdclass={"build_py": BuildPyWithStubs},
)
