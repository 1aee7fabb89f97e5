from setuptools import find_packages, setup

setup(
    name="minillm",
    version="0.1.0",
    description="A language model rebuilt from first principles: NumPy autograd, then Numba, C and CUDA kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minillm", "minillm.*"]),
    install_requires=[
        "numpy>=1.24",
        "cffi>=1.15",
        "numba>=0.58",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "safetensors>=0.4",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        # torch is only an oracle for tests and a peer in benchmarks; 2.13.0 is the CPU wheel
        # this project's machines carry locally.
        "oracle": ["torch==2.13.0"],
        # pick the wheel matching the CUDA runtime: cupy-cuda12x for CUDA 12, cupy-cuda13x for 13
        "gpu": ["cupy-cuda12x"],
    },
    entry_points={"console_scripts": ["minillm=minillm.cli:main"]},
)
