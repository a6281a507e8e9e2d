"""The repository layout must never shadow the c2pa SDK, and verification must not pull in torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imported_c2pa_is_the_sdk_not_a_repo_folder():
    sys.path.insert(0, str(ROOT))  # as pytest, `python -m` and GIMP's script dir may do
    try:
        import c2pa
    finally:
        sys.path.remove(str(ROOT))
    assert hasattr(c2pa, "Builder") and hasattr(c2pa, "Reader")
    assert (ROOT / "c2pa") not in Path(c2pa.__file__).resolve().parents
    assert "site-packages" in Path(c2pa.__file__).parts
    assert not (ROOT / "c2pa" / "__init__.py").exists()


def test_verify_path_imports_no_torch():
    code = (
        "import sys, avow.cli, avow_c2pa.verify, avow_c2pa.manifest, avow_c2pa.metadata; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_every_package_folder_is_in_the_wheel():
    """pyproject lists the packages by hand (the hooks and the sample are mapped in as data): a new
    subpackage must be added there, or the wheel ships without it."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set()
    for name, folder in setuptools["package-dir"].items():
        if (ROOT / folder / "__init__.py").exists():
            found |= {".".join([name, *init.parent.relative_to(ROOT / folder).parts])
                      for init in (ROOT / folder).rglob("__init__.py")}
    data_only = {name for name, folder in setuptools["package-dir"].items() if not (ROOT / folder / "__init__.py").exists()}
    assert set(setuptools["packages"]) == found | data_only
