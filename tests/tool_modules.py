"""The repository's ``tools/`` scripts, imported from their files for their tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` as a module (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"threadmem_{name}", TOOLS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
