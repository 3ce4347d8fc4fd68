"""Build the Cython kernels; metadata lives in pyproject.toml.

``onlinel1/_kernels/sgd.pyx`` is rendered from ``sgd.pyx.tp`` (Cython's
Tempita, as scikit-learn renders its ``.pyx.tp`` files): one learning loop
per update rule, listed in the template's registry."""
import pathlib

from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


def render(template: pathlib.Path) -> None:
    """Write ``x.pyx`` from ``x.pyx.tp``, leaving it untouched (and so not
    rebuilt) when the text is the same."""
    target = template.with_suffix("")
    text = Tempita.sub(template.read_text(), name=str(template))
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


for tp in sorted(pathlib.Path("onlinel1/_kernels").glob("*.pyx.tp")):
    render(tp)

extensions = [
    Extension(f"onlinel1._kernels.{name}", [f"onlinel1/_kernels/{name}.pyx"],
              extra_compile_args=["-O3"])
    for name in ("store", "sgd", "hashing", "interactions", "parse", "csr", "wire", "topk")
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES))
