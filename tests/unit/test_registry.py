"""The stage registry: the one place that knows every stage by name and imports them."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import realtime_glue
import realtime_glue.publishers
import realtime_glue.stages
from realtime_glue.config import parse_config
from realtime_glue.registry import PRESET_OPTIONS, PRESETS, STAGES
from realtime_glue.stage import Stage

PACKAGE = Path(realtime_glue.__file__).parent


def stage_subclasses() -> set[type[Stage]]:
    found = set()
    for package in (realtime_glue.stages, realtime_glue.publishers):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if inspect.isclass(value) and issubclass(value, Stage) and value is not Stage:
                    found.add(value)
    return found


def test_every_stage_class_is_registered_under_its_name():
    assert set(STAGES.values()) == stage_subclasses()
    assert all(name == cls.name for name, cls in STAGES.items())


def test_presets_name_only_registered_stages():
    for preset, names in PRESETS.items():
        assert set(names) <= set(STAGES), preset
    for preset, options in PRESET_OPTIONS.items():
        assert preset in PRESETS and set(options) <= set(STAGES)


def test_the_config_accepts_a_table_for_every_registered_stage():
    tables = "".join(f"[pipelines.p.{name}]\n" for name in STAGES)
    config = parse_config(f"[pipelines.p]\nstages = ['json']\n{tables}".encode())
    assert config.pipelines["p"].stages == ["json"]


def _imported_modules(path: Path) -> set[str]:
    """realtime_glue modules a source file imports, as dotted names."""
    module = "realtime_glue." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("realtime_glue")}


def test_only_the_registry_imports_the_stage_and_publisher_modules():
    importers = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "registry.py" or relative.startswith(("stages/", "publishers/")):
            continue
        hits = {
            name
            for name in _imported_modules(path)
            if name.startswith(("realtime_glue.stages.", "realtime_glue.publishers."))
        }
        if hits:
            importers[relative] = sorted(hits)
    assert importers == {}


def test_stages_import_no_publisher_and_nothing_imports_the_registry_back():
    for path in (PACKAGE / "stages").rglob("*.py"):
        assert not any(n.startswith("realtime_glue.publishers") for n in _imported_modules(path)), path
    for path in [
        *PACKAGE.glob("stage.py"),
        *(PACKAGE / "stages").rglob("*.py"),
        *(PACKAGE / "publishers").rglob("*.py"),
    ]:
        assert "realtime_glue.registry" not in _imported_modules(path), path


def test_each_stage_module_imports_on_its_own():
    """No import cycle: any stage or publisher module can be the first one imported."""
    for name in [cls.__module__ for cls in STAGES.values()]:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
