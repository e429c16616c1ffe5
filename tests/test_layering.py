"""The package's layering (pyproject.toml [tool.importlinter]) and a light ``import jaxmodels``."""
import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint_imports() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    return local if os.path.exists(local) else shutil.which("lint-imports")


def test_import_linter_contracts_are_kept():
    proc = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "3 kept, 0 broken" in proc.stdout, proc.stdout + proc.stderr


def _modules_after(code: str) -> list[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('jaxmodels'))))"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_jaxmodels_imports_no_family():
    assert _modules_after("import jaxmodels") == ["jaxmodels"]


def test_load_imports_only_the_family_the_checkpoint_names():
    vit_run = os.path.join(REPO, "tests", "fixtures", "old_checkpoints", "vit")
    loaded = _modules_after(f"import jaxmodels\nmodel, variables, config = jaxmodels.load({vit_run!r})")
    families = {name.split(".")[1] for name in loaded if name.count(".") >= 1}
    assert families == {"loading", "models", "training", "vision", "layers"}, loaded
