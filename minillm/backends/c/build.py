"""Builds the C kernels (``kernels/c``) into a CPython extension with cffi's out-of-line
API mode. ``setup.py`` calls ``ffibuilder`` at install time (``cffi_modules``); the ``c``
backend calls ``build_in_cache`` when the installed extension is missing, and always for
the AddressSanitizer + UBSan build (``MINILLM_C_SANITIZE=1``).

Nothing here lists the kernels: the sources are every ``.c`` file under kernels/c, and the
bindings are the signatures of the definitions marked ``MINILLM_API`` in them (the macro of
``minillm_kernels.h``), so adding a kernel is adding one ``.c`` file. A struct that such a
function takes is marked the same way, before its ``typedef`` (attention's ``attention_t``).

Flags: ``-O3 -march=native -mprefer-vector-width=512 -fopenmp``; when the compiler refuses
one, the next set that it accepts (without the vector width, then ``-O3 -fopenmp``, then
``-O3``). ``minillm info`` prints what was used, and the extensions (AVX2 … AVX512_BF16) it
turned on. A library built with -march=native runs only on CPUs with those extensions; the
backend checks at load (``build_info.c``) and builds for the CPU it finds, in a cache folder of
its own (``cpu_kind``), where the installed one would not run.

Why the vector width: on an Intel CPU with AVX-512 GCC's tuning prefers 256-bit vectors for
the loops it vectorises itself (the micro-kernel's explicit vector type is not affected), so
layer norm, GELU, the softmax inside attention and Adam ran half as wide as the machine
allows; with 512 they run as wide as the registers. Without AVX-512 the flag changes
nothing."""
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# MINILLM_API, then <return type> <name>(<parameters>) {  — an exported definition
_EXPORTED = re.compile(r"^MINILLM_API\s+([^;{}]*?\))\s*\{", re.M | re.S)
# MINILLM_API, then typedef struct { <fields> } <name>;  — a type that exported functions take
_EXPORTED_TYPE = re.compile(r"^MINILLM_API\s+(typedef\s+struct\s*\{[^{}]*\}\s*\w+\s*;)", re.M)
FLAG_SETS = (["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp"], ["-O3", "-march=native", "-fopenmp"],
             ["-O3", "-fopenmp"], ["-O3"])
SANITIZE_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=undefined", "-fopenmp"]


def c_dir():
    """kernels/c of the source tree. (setup.py runs this file on its own, outside the
    package, so no relative imports here.)"""
    return Path(os.environ.get("MINILLM_KERNELS") or Path(__file__).resolve().parents[3] / "kernels") / "c"


def compiler():
    return os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"


def compiler_accepts(flags):
    """Can the C compiler build and link a small OpenMP-or-not program with ``flags``?"""
    if shutil.which(compiler()) is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "probe.c"
        source.write_text("#include <math.h>\nint main(void) { return (int)sqrt(4.0) - 2; }\n")
        result = subprocess.run([compiler(), *flags, str(source), "-o", str(Path(scratch) / "probe"), "-lm"],
                                capture_output=True)
        return result.returncode == 0


def choose_flags(sanitize=False):
    if sanitize:
        if not compiler_accepts(SANITIZE_FLAGS):
            raise RuntimeError(f"the C compiler ({compiler()}) cannot build with {' '.join(SANITIZE_FLAGS)}")
        return SANITIZE_FLAGS
    for flags in FLAG_SETS:
        if compiler_accepts(flags):
            return flags
    print(f"minillm: no working C compiler found (tried {compiler()!r}); install gcc or clang and reinstall "
          f"minillm to get the c backend")
    return FLAG_SETS[-1]  # the build will fail, and setup.py carries on without the extension


def sources():
    """Every .c file under kernels/c, relative to it, in a fixed (sorted) order."""
    return sorted(path.relative_to(c_dir()).as_posix() for path in c_dir().rglob("*.c"))


def types():
    """The typedefs marked MINILLM_API (a struct that an exported function takes, such as
    attention/attention.h's attention_t), from every .h and .c file under kernels/c in sorted
    order and in file order within one: a struct may hold another declared before it."""
    found = {}
    for path in sorted(c_dir().rglob("*.[ch]")):
        name = path.relative_to(c_dir()).as_posix()
        text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        for match in _EXPORTED_TYPE.finditer(text):
            typedef = " ".join(match.group(1).split())
            type_name = re.search(r"(\w+)\s*;$", typedef).group(1)
            if type_name in found:
                raise RuntimeError(f"kernels/c: {type_name} is exported twice ({found[type_name][0]} and {name})")
            found[type_name] = (name, typedef)
    return [typedef for _, typedef in found.values()]


def declarations():
    """The MINILLM_API typedefs, then the prototypes of the MINILLM_API definitions in every
    source, for ffi.cdef and for the extension's own C (comments dropped: a signature carries
    none that cffi needs)."""
    found = {}
    for name in sources():
        text = re.sub(r"/\*.*?\*/", "", (c_dir() / name).read_text(), flags=re.S)
        for match in _EXPORTED.finditer(text):
            prototype = " ".join(match.group(1).split()) + ";"
            function = re.search(r"(\w+)\s*\(", prototype).group(1)
            if function in found:
                raise RuntimeError(f"kernels/c: {function} is exported twice ({found[function][0]} and {name})")
            found[function] = (name, prototype)
    return "\n".join(types() + [prototype for _, prototype in found.values()])


def source_digest():
    """A digest of every file under kernels/c and of this file (its flags): built into the
    extension (minillm_source_digest), so that a checkout whose kernels or compiler flags
    changed after the build can tell."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for source in sorted(p for p in c_dir().rglob("*") if p.is_file()):
        digest.update(source.relative_to(c_dir()).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def make_builder(module_name="minillm._ckernels", sanitize=False, relative_to=None):
    from cffi import FFI
    flags = choose_flags(sanitize)
    folder = c_dir() if relative_to is None else Path(os.path.relpath(c_dir(), relative_to))
    ffi = FFI()
    prototypes = declarations()
    ffi.cdef(prototypes)
    ffi.set_source(module_name, prototypes,
                   sources=[str(folder / name) for name in sources()], include_dirs=[str(folder)],
                   # the headers too, so that build_ext rebuilds when only a header changed
                   # (most of the GEMM's shared code lives in kernels/c/matmul/*.h)
                   depends=[str(folder / header.relative_to(c_dir())) for header in sorted(c_dir().rglob("*.h"))],
                   # gnu11, not c11: ISO mode turns off floating-point contraction, so
                   # `acc += a * b` compiles to a multiply and an add instead of one FMA
                   # (half the arithmetic rate of every kernel). -ffp-contract=fast says so.
                   # -fno-trapping-math: no kernel reads floating-point exception flags, and
                   # without it GCC refuses to turn a clamp (`x > c ? c : x`) into a blend, so
                   # the GELU and exp loops stayed scalar (gcc -fopt-info-vec-missed:
                   # "control flow in loop").
                   # -fno-math-errno: no kernel reads errno, and without it `sqrtf` in a
                   # vector loop keeps a branch to the libm call (which would set errno for a
                   # negative input), so Adam's loop would not vectorise (vsqrtps is exact
                   # either way).
                   extra_compile_args=flags + ["-std=gnu11", "-ffp-contract=fast", "-fno-trapping-math",
                                               "-fno-math-errno"],
                   extra_link_args=[f for f in flags if f.startswith(("-fopenmp", "-fsanitize"))] + ["-lm"],
                   define_macros=[("MINILLM_BUILD_FLAGS", '"' + " ".join(flags) + '"'),
                                  ("MINILLM_SOURCE_DIGEST", '"' + source_digest() + '"')])
    return ffi


def ffibuilder():
    """What ``setup.py`` builds: the optimised extension ``minillm._ckernels``."""
    return make_builder(relative_to=os.getcwd())  # setuptools wants paths inside the project


def cpu_kind(cpuinfo="/proc/cpuinfo"):
    """A short digest of this CPU's model name and feature flags (/proc/cpuinfo), "generic"
    where there is no /proc/cpuinfo: builds for different CPUs must not share a folder."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return "generic"
    wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]


def build_in_cache(sanitize=False):
    """Build (once per source version) into ~/.cache/minillm/c and import the module."""
    name = "_minillm_ckernels_sanitized" if sanitize else "_minillm_ckernels"
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # one folder per source version and CPU kind: a home directory shared by machines of
    # different kinds keeps a build for each (each built with -march=native on its own kind)
    folder = Path(root) / "minillm" / "c" / (source_digest() + ("-sanitized" if sanitize else "-" + cpu_kind()))
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    library = folder / f"{name}{suffix}"
    if not library.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            built = make_builder(name, sanitize).compile(tmpdir=scratch, verbose=False)
            shutil.move(built, library)  # appears whole or not at all
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module
