"""Test set-up: 8 fake CPU devices so mesh/sharding tests run on one CPU host; test tiers; file order.

XLA_FLAGS must be set before JAX is imported anywhere, hence at the top of conftest.

Every test gets exactly one tier marker (``pytest tests -m unit`` runs one tier; see TIERS below), and
the heavy files are collected first so that the two xdist workers of ``-n 2 --dist loadfile`` finish
together instead of one of them running the last end-to-end file alone.
"""
import ast
import functools
import importlib.util
import inspect
import os
import re
import shutil
import tempfile
import types

import pytest

# XLA's CPU backend at optimisation level 0: the suite's time goes into compiling many small programs
# (level 0 halves it, e.g. tests/projects/diffusion/test_diffusion_pipeline.py 151 s -> 81 s) rather than running
# them; numerics are compared with tolerances or with runs under the same flags.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# One persistent XLA compilation cache per pytest run, shared by the xdist workers and inherited by
# every binary and notebook kernel a test starts: the SIGKILL/SIGTERM/resume tests run one config
# several times, and each repeat then loads its executables instead of recompiling (CI time).
# Entries are keyed on the HLO, the flags and the devices, so a hit is the same program.
# The first conftest to run (the xdist controller, before it starts the workers) makes the directory
# and removes it at the end; the workers inherit it through the environment.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxmodels-xla-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
if importlib.util.find_spec("filelock") is not None:  # a size bound turns on the cache's file lock
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import jax  # noqa: E402

assert jax.device_count() == 8, "conftest must run before anything imports jax"

TESTS = os.path.dirname(os.path.abspath(__file__))

# The tiers, one per test (the first rule that matches wins; a test marked with a tier in its file keeps it):
#   integration  tests/projects/<paper>/test_*binar*.py and test_*colab*.py: the train/ binaries and the
#                colabs/ notebooks end to end, in fresh interpreters (most of the suite's time)
#   parity       needs a PyTorch-family library (it compares with torch, transformers, diffusers, PyG,
#                pytorch-fid, or runs a benchmark against one): the module or the test imports one
#   multidevice  builds a mesh of several devices, checks sharding, or starts several JAX processes
#   unit         everything else: functions, modules and in-process runs (no binary, notebook or PyTorch)
TIERS = ("unit", "integration", "parity", "multidevice")
_INTEGRATION_FILE = re.compile(r"^test_.*(binar|colab).*\.py$")
_PYTORCH_FAMILY = ("torch", "transformers", "diffusers", "torch_geometric", "pytorch_fid", "torchvision")
_PYTORCH_NAMES = re.compile(r"\b(" + "|".join(_PYTORCH_FAMILY) + r")\b")
_MULTIDEVICE_FILES = {os.path.join("training", name)
                      for name in ("test_parallel.py", "test_mesh.py", "test_multihost.py")}
_MULTIDEVICE_SOURCE = re.compile(
    r"""\b(data|fsdp|model)["']?\s*[=:]\s*[2-9]\b|mesh\.update|MESHES|addressable_shards|\.sharding\b|"""
    r"NamedSharding|device_count\(\)|jax\.devices\(\)|jax\.distributed|num_devices=[2-9]")


def pytest_configure(config):
    # xdist's --dist loadfile hands out files by their number of tests, most first, unless told otherwise; the
    # suite's time is in few-test end-to-end files, which then start last and leave one worker running them
    # alone. Keep the collection order instead: heavy files first (pytest_collection_modifyitems).
    if getattr(config.option, "loadscopereorder", None):
        config.option.loadscopereorder = False


def pytest_sessionfinish(session):
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@functools.lru_cache(maxsize=None)
def _definitions(filename: str) -> dict:
    """The functions and classes of a file: (source text, names it uses), by the line its def (or its first
    decorator) is on, and the module-level ones also by name."""
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
        tree = ast.parse(text)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    lines, definitions = text.splitlines(), {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            names = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
            definitions[first] = ("\n".join(lines[first - 1:node.end_lineno]), names)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions[node.name] = definitions[min([node.lineno] + [d.lineno for d in node.decorator_list])]
    return definitions


def _definition(obj):
    """(source text, names used) of a function or a module-level class of the suite, or None."""
    obj = inspect.unwrap(obj)
    code = getattr(obj, "__code__", None)
    if code is not None:
        return _definitions(code.co_filename).get(code.co_firstlineno)
    module = inspect.getmodule(obj)
    filename = getattr(module, "__file__", None)
    return _definitions(filename).get(obj.__name__) if filename else None


def _own_source(item) -> str:
    """The source the test runs from the suite's own files: its function, its fixtures (those defined under
    tests/) and the module-level functions and classes these name, transitively."""
    module = getattr(item, "module", None)
    pending = [getattr(item, "function", None)]
    fixture_info = getattr(item, "_fixtureinfo", None)
    for defs in (fixture_info.name2fixturedefs.values() if fixture_info is not None else ()):
        pending += [d.func for d in defs if getattr(getattr(d.func, "__code__", None), "co_filename", "").startswith(TESTS)]
    seen, parts = set(), []
    while pending:
        obj = pending.pop()
        if obj is None or obj in seen:
            continue
        seen.add(obj)
        definition = _definition(obj)
        if definition is None:
            continue
        text, names = definition
        parts.append(text)
        if module is not None:
            pending += [helper for helper in map(module.__dict__.get, names)
                        if (inspect.isfunction(helper) or inspect.isclass(helper))
                        and helper.__module__ == module.__name__]
    return "\n".join(parts)


def _imports_pytorch_family(module) -> bool:
    return any(isinstance(value, types.ModuleType) and value.__name__.split(".")[0] in _PYTORCH_FAMILY
               for value in vars(module).values())


def tier_of(item) -> str:
    for tier in TIERS:
        if item.get_closest_marker(tier) is not None:
            return tier
    path = os.path.relpath(str(item.path), TESTS)
    if path.startswith("projects" + os.sep) and _INTEGRATION_FILE.match(os.path.basename(path)):
        return "integration"
    module = getattr(item, "module", None)
    source = _own_source(item)
    if (module is not None and _imports_pytorch_family(module)) or _PYTORCH_NAMES.search(source):
        return "parity"
    if path in _MULTIDEVICE_FILES or _MULTIDEVICE_SOURCE.search(source):
        return "multidevice"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the tier markers given here
def pytest_collection_modifyitems(config, items):
    files = {}
    for index, item in enumerate(items):
        tier = tier_of(item)
        item.add_marker(getattr(pytest.mark, tier))
        first, heavy = files.get(item.path, (index, False))
        files[item.path] = (first, heavy or tier == "integration" or item.get_closest_marker("slow") is not None)
    # Heavy files (integration tier or marked slow: the end-to-end runs) first, each file's tests kept together
    # and in order: --dist loadfile hands out files in this order, so the last files to start are short ones
    # and the two workers end together.
    items.sort(key=lambda item: (not files[item.path][1], files[item.path][0]))
