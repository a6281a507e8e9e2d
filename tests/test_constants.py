"""Constants defined once: the editor hooks cannot import Avow (they run in GIMP's or Krita's own
Python), so the few values they need before a worker answers are literals there; these tests keep
them equal to the core's, read from the hooks' source without importing gi or krita."""

import ast
from pathlib import Path

import pytest

from avow import DEFAULT_TILE
from avow_c2pa.disclosure import COMPOSITE_WITH_AI
from avow_c2pa.formats import OUTPUT_SUFFIXES

ROOT = Path(__file__).resolve().parents[1]
GIMP = ROOT / "plugin" / "gimp" / "avow-upscale" / "avow-upscale.py"
KRITA = ROOT / "plugin" / "krita" / "avow_krita" / "core.py"


def module_literals(path: Path) -> dict:
    """The module-level ``NAME = <literal>`` assignments of a file."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


@pytest.mark.parametrize("hook", [GIMP, KRITA], ids=["gimp", "krita"])
def test_the_hooks_fallback_tile_is_the_cores(hook):
    assert module_literals(hook)["DEFAULT_TILE"] == DEFAULT_TILE


def test_the_gimp_hooks_formats_and_source_type_are_the_cores():
    literals = module_literals(GIMP)
    assert literals["EXPORT_SUFFIXES"] == tuple(OUTPUT_SUFFIXES)
    assert literals["COMPOSITE_WITH_AI"] == COMPOSITE_WITH_AI


def test_the_krita_hooks_formats_are_the_cores():
    # Krita's names are the file dialog's (WebP, TIFF); the formats behind them are the core's.
    formats = module_literals(KRITA)["EXPORT_FORMATS"]
    assert {suffix: name.lower() for suffix, name in formats.items()} == OUTPUT_SUFFIXES
    assert list(formats) == list(OUTPUT_SUFFIXES)
