"""Build the Cython kernels; metadata lives in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import Extension, setup

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

extensions = [
    Extension(f"onlinel1._kernels.{name}", [f"onlinel1/_kernels/{name}.pyx"],
              extra_compile_args=["-O3"])
    for name in ("store", "sgd", "hashing", "parse", "csr")
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES))
