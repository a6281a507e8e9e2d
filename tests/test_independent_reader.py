"""A second, independent C2PA implementation reads Avow's manifests: @trustnxt/c2pa-ts (pure
TypeScript, no c2pa-rs) through ``bench/read_c2pa_ts.mjs``. Skipped where Node or the package is
absent; install it privately with
``npm install --prefix ~/.cache/avow-tests/c2pa-ts @trustnxt/c2pa-ts`` (or point AVOW_C2PA_TS
at a node_modules folder that has it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from avow_c2pa.disclosure import COMPOSITE_WITH_AI
from test_watermark_binding import upscaled  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
MODULES = Path(os.environ.get("AVOW_C2PA_TS") or Path.home() / ".cache" / "avow-tests" / "c2pa-ts" / "node_modules")


def read_with_c2pa_ts(*paths: Path) -> list[dict]:
    if shutil.which("node") is None or not (MODULES / "@trustnxt" / "c2pa-ts").is_dir():
        pytest.skip(f"node or @trustnxt/c2pa-ts (looked in {MODULES}) is not installed")
    result = subprocess.run(
        ["node", str(ROOT / "bench" / "read_c2pa_ts.mjs"), *map(str, paths)],
        capture_output=True, text=True, check=True, env={**os.environ, "NODE_PATH": str(MODULES)},
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_c2pa_ts_validates_an_output_and_reads_what_it_declares(upscaled, tmp_path):  # noqa: F811
    _, result = upscaled
    tampered = tmp_path / "tampered.png"
    data = bytearray(result.output.read_bytes())
    idat = data.index(b"IDAT") + 40
    data[idat] ^= 0xFF
    tampered.write_bytes(bytes(data))
    output, damaged = read_with_c2pa_ts(result.output, tampered)

    assert output["valid"] is True and output["failures"] == [], output
    assert {"c2pa.actions.v2", "dev.avow.watermark", "c2pa.hash.data"} <= set(output["assertion_labels"])
    assert not [label for label in output["assertion_labels"] if label.startswith("c2pa.soft-binding")]
    actions = {a["action"]: a for a in output["actions"]}
    assert list(actions) == ["c2pa.opened", "c2pa.edited", "c2pa.resized", "c2pa.watermarked.unbound"]
    assert actions["c2pa.edited"]["digitalSourceType"] == COMPOSITE_WITH_AI
    identifier = result.disclosure.watermark_id
    assert actions["c2pa.edited"]["parameters"]["dev.avow.model"] == result.disclosure.model_name
    assert actions["c2pa.watermarked.unbound"]["parameters"]["dev.avow.identifier"] == identifier
    for action in output["actions"][1:]:
        assert all(name.startswith("dev.avow.") for name in action["parameters"]), action
    assert output["avow_watermark"][0]["identifiers"] == [identifier]

    # The reader is not a rubber stamp: one flipped pixel byte is a hash mismatch to it too.
    assert damaged["valid"] is False and "assertion.dataHash.mismatch" in damaged["failures"], damaged
