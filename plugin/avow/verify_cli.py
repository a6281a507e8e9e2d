"""`avow verify`: walking folders, printing reports, and the batch's exit code.

The walk is iterative (a tree thousands of folders deep is walked, not a RecursionError), and
everything it cannot read is a finding with its own line, never a traceback or a silent skip:
an unreadable folder, a folder with nothing to verify. File names come from the file system
and may be any bytes: they are printed escaped, never allowed to stop the batch.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

from avow_c2pa.formats import READABLE_SUFFIXES
from avow_c2pa.report import Report, printable, printable_path
from avow_c2pa.verdicts import EXIT_CODES, UNREADABLE

from .errors import UsageError


def run(args) -> int:
    from avow_c2pa.isolation import VerifierPool, close, spawn
    from avow_c2pa.report import trust_anchors
    from avow_c2pa.verdicts import batch_exit_code

    if isinstance(sys.stdout, io.TextIOWrapper):  # any locale, any file name (a test's capture may be another type)
        sys.stdout.reconfigure(errors="backslashreplace")
    entries = list(targets(args.files, args.recursive))
    paths = [entry for entry in entries if isinstance(entry, Path)]
    # The parsers import while this process reads the trust anchors: one file's verdict comes a third sooner.
    spawned = spawn(args.jobs, len(paths))
    try:
        pool = VerifierPool(trust_anchors(args.trust), args.allow_remote, args.jobs, args.cpu_budget, ocsp=args.ocsp,
                            spawned=spawned)
        verdicts: Counter = Counter()
        with _progress(len(paths)) as bar:
            reports = pool.verify(paths, on_done=lambda _: bar.update())
            for entry in entries:
                report = entry if isinstance(entry, Report) else next(reports)
                verdicts[report.verdict] += 1
                if args.json:
                    print(json.dumps(report.to_dict(), ensure_ascii=True))
                else:
                    print_report(report)
    finally:
        close(spawned)  # those no file needed, or all of them when the anchors could not be read
    if len(entries) > 1 and not args.json:
        print("\n" + "  ".join(f"{verdict}: {verdicts[verdict]}" for verdict in EXIT_CODES if verdicts[verdict]))
    return batch_exit_code(verdicts)


def _progress(total: int):
    """A progress bar on a terminal, for 20 files or more; otherwise none, and tqdm is not even
    imported: a script's or another tool's run starts 40 ms sooner."""
    if total < 20 or not sys.stderr.isatty():
        return nullcontext(SimpleNamespace(update=lambda: None))
    from tqdm import tqdm

    return tqdm(total=total, unit="file", leave=False)


def targets(arguments: list[Path], recursive: bool) -> Iterator[Path | Report]:
    """Files to verify, and a finding for each folder that could not be read or held nothing to verify."""
    for argument in arguments:
        if not argument.is_dir():
            yield argument  # a missing or odd file gets its own "unreadable" verdict
        elif not recursive:
            raise UsageError(f"{printable_path(argument)}: is a folder; add --recursive to verify the images in it")
        else:
            found = False
            for entry in walk(argument):
                found = found or isinstance(entry, Path)
                yield entry
            if not found:
                names = " ".join(sorted(READABLE_SUFFIXES))
                yield Report(str(argument), UNREADABLE, f"Nothing verified: no image files in this folder ({names}).")


def walk(root: Path) -> Iterator[Path | Report]:
    """Image files under ``root`` in name order, depth first, without recursion; symlinked folders are
    not followed (a link loop must not walk forever)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            yield Report(str(folder), UNREADABLE,
                         f"Unreadable folder: {exc.strerror or exc}; nothing in it was verified.")
            continue
        subfolders = []
        for entry in entries:
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                yield Report(entry.path, UNREADABLE, f"Unreadable: {exc.strerror or exc}.")
                continue
            if is_folder:
                subfolders.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in READABLE_SUFFIXES:
                yield Path(entry.path)
        stack.extend(reversed(subfolders))


def print_report(report: Report) -> None:
    print(f"{printable_path(report.file)}: {printable(report.summary, 600)}")
    if report.manifest_present:
        signer = report.signer or {}
        print(
            f"  C2PA: {report.validation_state}; signer {printable(signer.get('common_name'))}, "
            f"issuer {printable(signer.get('issuer'))}, algorithm {printable(signer.get('alg'))}"
        )
        when = f"{printable(report.signing_time)} (time-stamped)" if report.signing_time else "not time-stamped"
        print(f"  signed: {when}" + "".join(f"; {_explained(report, c)}" for c in report.timestamp_codes))
        for code in report.status_codes:
            print(f"  C2PA status: {_explained(report, code)}")
        for code in report.revocation_codes:
            print(f"  revocation: {_explained(report, code)}")
        for identity in report.identities:
            names = ", ".join(map(printable, identity["names"])) or "no name the SDK could read"
            codes = "".join(f"; {printable(c)}" for c in identity.get("codes", []))
            print(f"  identity ({printable(identity['label'])}): {names}{codes}")
        for declaration in report.declarations:
            where = " > ".join(map(printable, declaration["ingredient_path"])) or "this manifest"
            agent = f" by {printable(declaration['software_agent'])}" if declaration["software_agent"] else ""
            print(f"  declares: {printable(declaration['source_type'].rsplit('/', 1)[-1])} ({declaration['kind']}) "
                  f"in {where}, {printable(declaration['action'])}{agent} (from the {printable(declaration['via'])})")
        for ingredient in report.ingredients:
            _print_ingredient(ingredient)
    if report.remote_url:
        print(f"  credentials at: {printable(report.remote_url)}")
    if report.model:
        print(f"  model: {printable(report.model.get('model'))}, weights sha256 {printable(report.model.get('sha256'))}")
    if report.xmp.get("digital_source_type"):
        agreement = {True: "agrees with the manifest", False: "DISAGREES with the manifest", None: "unsigned"}
        print(
            f"  XMP DigitalSourceType: {printable(report.xmp['digital_source_type'])} "
            f"({agreement[report.metadata_agrees]})"
        )
    _print_watermark(report.watermark)
    for note in report.notes:
        print(f"  note: {printable(note)}")
    if report.diagnostics:
        print("  parser stderr (last lines): " + " | ".join(map(printable, report.diagnostics.splitlines()[-5:])))


def _explained(report: Report, code: str) -> str:
    explanation = report.explanations.get(code)
    return printable(code) + (f" ({explanation})" if explanation else "")


def _print_ingredient(ingredient: dict) -> None:
    history = "no provenance of its own"
    if ingredient["had_manifest"]:
        types = ", ".join(t.rsplit("/", 1)[-1] for t in ingredient["digital_source_types"]) or "no source type"
        history = f"its own manifest signed by {ingredient['signer']} ({types})"
    if ingredient["failures"]:
        history += "; its validation FAILED: " + ", ".join(ingredient["failures"])
    path = " > ".join(map(str, ingredient["path"]))
    print(f"  made from: {printable(path)} ({printable(ingredient['relationship'])}), {printable(history)}")


def _print_watermark(mark: dict | None) -> None:
    if mark is None:
        return
    if mark["found"]:
        identifier = mark["identifier"] or "unreadable"
        match = {True: ", as the manifest declares", False: ", NOT the manifest's", None: ""}[mark["matches_manifest"]]
        where = f" in layer {printable(mark['layer'])!r}" if mark.get("layer") else ""
        print(
            f"  watermark: Avow's mark found{where} ({mark['key']} key), score {mark['score']}, false-positive "
            f"probability {mark['false_positive_probability']:.0e}; identifier {identifier}{match}"
        )
    elif mark.get("checked", True):
        print(f"  watermark: none found (score {mark['score']})")
    else:
        print(f"  watermark: NOT CHECKED ({printable(mark['reason'])})")
