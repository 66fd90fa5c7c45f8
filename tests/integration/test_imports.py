"""The import-layer check (scripts/check_imports.py): the tree passes, a broken one fails."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_imports.py"


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_tree_has_no_circles_layer_violations_or_foreign_privates(checker: ModuleType) -> None:
    assert checker.check(ROOT) == []
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_graph_counts_imports_inside_functions(checker: ModuleType) -> None:
    graph = {(e.source, e.target) for e in checker.edges(checker.discover(ROOT))}
    assert ("pipeline.cli", "pipeline.app") in graph  # module level
    assert ("pipeline.app", "flows.monthly_close") in graph  # inside run_close
    assert ("pipeline.demo", "pipeline.app") in graph
    assert not any(s.startswith("flows") and t in ("pipeline.cli", "pipeline.app") for s, t in graph)
    assert ("pipeline.close", "pipeline.render.build") not in graph


def test_a_hidden_circle_a_layer_violation_and_a_private_import_fail(checker: ModuleType,
                                                                     tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/cli.py": "from pipeline import demo\n",
        # the circle hides behind an import inside a function
        "pipeline/demo.py": "def run():\n    from pipeline.cli import _say\n",
        "pipeline/calc/charges.py": "from ..render import build\n",
        "pipeline/render/__init__.py": "",
        "pipeline/render/build.py": "import pipeline.calc.charges\n",
        "flows/__init__.py": "",
    })
    problems = checker.check(root)
    text = "\n".join(problems)
    assert "круг импортов: pipeline.cli -> pipeline.demo -> pipeline.cli" in text
    assert "pipeline.demo -> pipeline.cli (строка 2)" in text
    assert "круг импортов: pipeline.calc.charges -> pipeline.render.build -> pipeline.calc.charges" in text
    assert "нарушение слоёв: pipeline.calc.charges -> pipeline.render.build (строка 1)" in text
    assert "импорт чужого закрытого имени _say: pipeline.demo -> pipeline.cli (строка 2)" in text
    assert len(problems) == 4, problems
    run = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "pipeline.demo -> pipeline.cli" in run.stderr


def test_a_layer_violation_without_a_circle_fails_too(checker: ModuleType, tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "pipeline/render/receipts.py": "from pipeline.app import run_close\n",
        "pipeline/app.py": "",
        "schemas/__init__.py": "import flows.monthly_close\n",
        "flows/monthly_close.py": "",
        "flows/nightly.py": "def run():\n    from pipeline.cli import default_home\n",
        "pipeline/cli.py": "",
    })
    assert sorted(checker.check(root)) == [
        "нарушение слоёв: flows.nightly -> pipeline.cli (строка 2)",
        "нарушение слоёв: pipeline.render.receipts -> pipeline.app (строка 1)",
        "нарушение слоёв: schemas -> flows.monthly_close (строка 1)",
    ]
