"""Each stage imports only the stages to its left (the flow in docs/INTERFACES.md).

Parses every module of ``src/normlab`` (imports inside functions included) and fails naming the
module and the import that points to the right.
"""

from __future__ import annotations

import ast
from pathlib import Path

import normlab

FLOW = ("data", "norms", "models", "train", "probes", "store", "report", "experiments", "cli")
FOUNDATION = ("errors", "registry")  # importable from every stage
PACKAGE = Path(normlab.__file__).parent


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "normlab" else None


def _imports(path: Path, module: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def test_the_flow_lists_every_stage():
    stages = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
              if not path.name.startswith("_") and (path.suffix == ".py" or (path / "__init__.py").exists())}
    assert stages == set(FLOW) | set(FOUNDATION)
    assert "`" + " -> ".join(FLOW) + "`" in (PACKAGE.parents[1] / "docs" / "INTERFACES.md").read_text()


def test_no_stage_imports_a_stage_to_its_right():
    wrong = []
    for path, module in _modules():
        stage = _stage(module)
        for imported in _imports(path, module):
            target = _stage(imported)
            if stage is None or target is None or target == stage or target in FOUNDATION:
                continue
            if stage in FOUNDATION or FLOW.index(target) > FLOW.index(stage):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "imports against the flow: " + "; ".join(wrong)
