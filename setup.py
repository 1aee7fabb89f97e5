from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """The C kernels are the `c` backend; without a working compiler minillm still
    installs, and `minillm info` reports why the `c` backend is unavailable."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # distutils raises several unrelated error types here
            print(f"minillm: building the C kernels failed ({exc}); the 'c' backend will be unavailable")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"minillm: building {ext.name} failed ({exc}); the 'c' backend will be unavailable")


setup(
    name="minillm",
    version="0.1.0",
    description="A language model rebuilt from first principles: NumPy autograd, then Numba, C and CUDA kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minillm", "minillm.*"]),
    package_data={"minillm.book": ["templates/*.j2", "assets/*"]},  # the book's page templates and styles
    install_requires=[
        "numpy>=1.24",
        "cffi>=1.15",
        "numba>=0.58",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "safetensors>=0.4",
        "regex>=2023.0",  # GPT-2's pre-tokenizer needs Unicode classes (\\p{L}, \\p{N})
        "hypothesis>=6.80",  # `minillm exercise` checks a learner's answers on drawn inputs
        "threadpoolctl>=3.1",  # NumPy's BLAS steps aside while our kernels' threads run (blas_threads.py)
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        # torch, transformers and tokenizers are only oracles for tests and peers in benchmarks
        # (GPT-2's checkpoints and tokenizer are checked against Hugging Face's own code);
        # torch 2.13.0 is the CPU wheel this project's machines carry locally.
        "oracle": ["torch==2.13.0", "transformers>=4.40", "tokenizers>=0.19"],
        # pick the wheel matching the CUDA runtime: cupy-cuda12x for CUDA 12, cupy-cuda13x for 13
        "gpu": ["cupy-cuda12x"],
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        # MPI from PyPI: mpich's wheel carries the library and mpiexec, so no system MPI is needed
        "mpi": ["mpi4py>=4.0", "mpich>=4.1"],
        # the lessons as executed notebooks rendered to HTML (make book); django-static-mathjax
        # is MathJax 3 as plain files (no Django needed), copied into the site so formulas
        # render offline
        "book": ["jupytext>=1.16", "nbclient>=0.10", "nbconvert>=7.0", "ipykernel>=6.0",
                 "django-static-mathjax>=3.2"],
    },
    cffi_modules=["minillm/backends/c/build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
    entry_points={"console_scripts": ["minillm=minillm.cli:main"]},
)
