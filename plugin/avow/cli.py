"""`avow`: a thin command line over the engine and the verifier.

Every failure a user can cause ends in one line on stderr and a documented exit code, never a
traceback. Exit codes: verify uses its verdict codes (0 verified, 1 tampered, 2 no provenance,
3 unreadable); other commands use 0 success, 3 usage or unreadable input, 4 failure while
working, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avow_c2pa.errors import ProvenanceError
from avow_c2pa.interrupts import stop_signals_raise

from . import __version__
from .errors import AvowError, Cancelled

EXIT_USAGE = 3
EXIT_FAILED = 4
EXIT_CANCELLED = 130


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except (Cancelled, KeyboardInterrupt):
        print("avow: cancelled; no file was written", file=sys.stderr)
        return EXIT_CANCELLED
    except (AvowError, ProvenanceError, LookupError, ValueError) as exc:
        print(f"avow: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE if _is_usage(exc) else EXIT_FAILED
    except MemoryError:
        print("avow: error: out of memory (the output and its watermark are held in RAM); no file was written. "
              "Try --scale 2 or a smaller input.", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return 0


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if len(exc.args) == 1 else str(exc)


def _is_usage(exc: Exception) -> bool:
    """Bad input rather than failed work; model errors are LookupError/ValueError, so torch stays unimported."""
    from .errors import ImageError, UsageError

    return isinstance(exc, (UsageError, ImageError, LookupError, ValueError))


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments, which would read as verify's "no provenance"."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"avow: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="avow", description="AI upscaling that says so: C2PA + EXIF/XMP disclosure.")
    parser.add_argument("--version", action="version", version=f"avow {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    upscale = commands.add_parser("upscale", help="upscale an image; the result is disclosed and signed")
    upscale.add_argument("input", type=Path)
    upscale.add_argument("-o", "--output", type=Path, required=True, help="output file; its extension picks the format")
    upscale.add_argument("--scale", type=int, choices=(2, 4), help="default: the model's scale (4 for the default)")
    upscale.add_argument("--model", help="built-in or user model name, or a .safetensors/.pth path")
    upscale.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    upscale.add_argument("--tile", type=int, default=256, help="tile size in input pixels (0: whole image)")
    upscale.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    upscale.add_argument("--key", type=Path, help="PEM private key to sign with (default: your local identity)")
    upscale.add_argument("--cert", type=Path, help="PEM certificate chain for --key, leaf first")
    upscale.set_defaults(run=_upscale)

    verify = commands.add_parser("verify", help="say what files are: AI-synthesized, signed, tampered, or unknown")
    verify.add_argument("files", nargs="+", type=Path, help="files, or folders with --recursive")
    verify.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    verify.add_argument("--trust", type=Path, action="append", default=[], help="extra PEM trust anchors")
    verify.add_argument("-r", "--recursive", action="store_true", help="verify the images in folders, recursively")
    verify.add_argument("-j", "--jobs", type=int, help="parser processes (default: one per CPU)")
    verify.add_argument("--allow-remote", action="store_true", help="fetch manifests a file says are stored online")
    verify.set_defaults(run=_verify)

    keys = commands.add_parser("keys", help="the signing identity").add_subparsers(metavar="ACTION")
    keys.add_parser("show", help="where the identity lives and its fingerprints").set_defaults(run=_keys_show)

    install = commands.add_parser("install", help="install the GIMP 3 or Krita 5 hook for this user")
    install.add_argument("editor", choices=("gimp", "krita"))
    install.add_argument("--print", action="store_true", dest="dry_run", help="show what would be done, do nothing")
    install.add_argument("--target", type=Path, help="plug-in folder to use instead of the editor's default")
    install.set_defaults(run=_install)

    package = commands.add_parser("package", help="build a plugin zip for Krita's Import Python Plugin from File")
    package.add_argument("editor", choices=("krita",))
    package.add_argument("-o", "--output", type=Path, default=Path("avow_krita.zip"))
    package.set_defaults(run=_package)

    models = commands.add_parser("models", help="built-in and user models").add_subparsers(metavar="ACTION")
    models.add_parser("list", help="list the models Avow can use").set_defaults(run=_models_list)
    convert = models.add_parser("convert", help="rewrite a .pth checkpoint as .safetensors")
    convert.add_argument("source", type=Path)
    convert.add_argument("target", type=Path)
    convert.set_defaults(run=_models_convert)
    return parser


def _upscale(args) -> int:
    with stop_signals_raise():  # from the start: torch takes seconds to import
        return _upscale_stoppable(args)


def _upscale_stoppable(args) -> int:
    from tqdm import tqdm

    from .engine import UpscaleOptions, upscale_file

    options = UpscaleOptions(args.scale, args.model, args.device, args.tile, args.force, args.key, args.cert)
    before = _file_id(args.output)
    with tqdm(total=0, unit="tile", disable=not sys.stderr.isatty(), leave=False) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:  # the tile count is known only once the model runs
                bar.reset(total=total)
            bar.update(done - bar.n)

        try:
            result = upscale_file(args.input, args.output, options, on_progress=progress)
        except KeyboardInterrupt:
            if _file_id(args.output) == before:
                raise
            # The stop came in the instant between the final os.replace and the return.
            print(f"avow: cancelled once {args.output} was complete (disclosed and signed)", file=sys.stderr)
            return EXIT_CANCELLED
    width, height = result.output_size
    print(
        f"{result.output}: {width}x{height}, x{result.disclosure.scale} with {result.disclosure.model_name} "
        f"on {result.device} in {result.seconds:.1f}s; disclosed (EXIF/XMP) and signed (C2PA)"
    )
    return 0


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _verify(args) -> int:
    from collections import Counter

    from tqdm import tqdm

    from avow_c2pa.isolation import VerifierPool
    from avow_c2pa.verify import EXIT_CODES, printable, trust_anchors

    paths = _verify_targets(args.files, args.recursive)
    pool = VerifierPool(trust_anchors(args.trust), args.allow_remote, args.jobs)
    verdicts: Counter = Counter()
    worst = 0
    with tqdm(total=len(paths), unit="file", disable=len(paths) < 20 or not sys.stderr.isatty(), leave=False) as bar:
        for report in pool.verify(paths, on_done=lambda _: bar.update()):
            verdicts[report.verdict] += 1
            worst = max(worst, report.exit_code)
            if args.json:
                print(json.dumps(report.to_dict(), ensure_ascii=True))
            else:
                _print_report(report, printable)
    if len(paths) > 1 and not args.json:
        print("\n" + "  ".join(f"{verdict}: {verdicts[verdict]}" for verdict in EXIT_CODES if verdicts[verdict]))
    return worst


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".avif", ".gif", ".xcf"}


def _verify_targets(arguments: list[Path], recursive: bool) -> list[Path]:
    from .errors import UsageError

    paths = []
    for argument in arguments:
        if not argument.is_dir():
            paths.append(argument)  # a missing or odd file gets its own "unreadable" verdict
        elif not recursive:
            raise UsageError(f"{argument}: is a folder; add --recursive to verify the images in it")
        else:
            paths.extend(p for p in sorted(argument.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return paths


def _print_report(report, printable) -> None:
    print(f"{printable(report.file)}: {printable(report.summary, 600)}")
    if report.manifest_present:
        signer = report.signer or {}
        print(
            f"  C2PA: {report.validation_state}; signer {printable(signer.get('common_name'))}, "
            f"issuer {printable(signer.get('issuer'))}"
        )
        for code in report.status_codes:
            explanation = report.explanations.get(code)
            print(f"  C2PA status: {printable(code)}" + (f" ({explanation})" if explanation else ""))
        for ingredient in report.ingredients:
            history = "no provenance of its own"
            if ingredient["had_manifest"]:
                types = ", ".join(t.rsplit("/", 1)[-1] for t in ingredient["digital_source_types"]) or "no source type"
                history = f"its own manifest signed by {ingredient['signer']} ({types})"
            print(f"  made from: {printable(ingredient['title'])} ({ingredient['relationship']}), {printable(history)}")
    if report.model:
        print(f"  model: {printable(report.model.get('model'))}, weights sha256 {printable(report.model.get('sha256'))}")
    if report.xmp.get("digital_source_type"):
        agreement = {True: "agrees with the manifest", False: "DISAGREES with the manifest", None: "unsigned"}
        print(
            f"  XMP DigitalSourceType: {printable(report.xmp['digital_source_type'])} "
            f"({agreement[report.metadata_agrees]})"
        )
    mark = report.watermark
    if mark is not None:
        if mark["found"]:
            identifier = mark["identifier"] or "unreadable"
            match = {True: ", as the manifest declares", False: ", NOT the manifest's", None: ""}[mark["matches_manifest"]]
            where = f" in layer {printable(mark['layer'])!r}" if mark.get("layer") else ""
            print(
                f"  watermark: Avow's mark found{where} ({mark['key']} key), score {mark['score']}, false-positive "
                f"probability {mark['false_positive_probability']:.0e}; identifier {identifier}{match}"
            )
        else:
            print(f"  watermark: none found (score {mark['score']})")
    for note in report.notes:
        print(f"  note: {printable(note)}")


def _keys_show(args) -> int:
    from avow_c2pa.keys import signing_identity

    identity = signing_identity()
    leaf = identity.leaf
    print(f"identity: {identity.origin}")
    print(f"algorithm: {identity.alg}")
    print(f"signer: {leaf.subject.rfc4514_string()}")
    print(f"valid until: {leaf.not_valid_after_utc:%Y-%m-%d}")
    for role, fingerprint in identity.fingerprints().items():
        print(f"{role} SHA-256: {fingerprint}")
    return 0


def _install(args) -> int:
    from .install import install_steps

    for step in install_steps(args.editor, args.target):
        print(("would " if args.dry_run else "") + step.description)
        if not args.dry_run:
            step.action()
    if not args.dry_run:
        editor = {"gimp": "GIMP", "krita": "Krita"}[args.editor]
        print(f"avow: {editor} hook installed; restart {editor} to load it")
    return 0


def _package(args) -> int:
    from .install import package_krita

    package_krita(args.output)
    print(f"{args.output}: import it in Krita with Tools > Scripts > Import Python Plugin from File...")
    return 0


def _models_list(args) -> int:
    from avow_c2pa.config import user_models_dir
    from avow_models import builtin_models, load_model

    user_dir = user_models_dir()
    rows = [("built-in", d) for d in builtin_models()]
    if user_dir.is_dir():
        for path in sorted(user_dir.iterdir()):
            if path.suffix in (".safetensors", ".pth", ".ckpt"):
                try:
                    rows.append(("user", load_model(path).descriptor))
                except (AvowError, LookupError, ValueError) as exc:
                    print(f"avow: skipping {path.name}: {_message(exc)}", file=sys.stderr)
    print(f"{'origin':9} {'name':28} {'arch':16} {'scale':5} {'size':>9}  sha256")
    for origin, d in rows:
        print(f"{origin:9} {d.name:28} {d.arch:16} x{d.scale:<4} {d.size_bytes / 1e6:8.2f}M  {d.sha256}")
    print(f"user models directory: {user_dir}")
    return 0


def _models_convert(args) -> int:
    from avow_models import convert_to_safetensors

    convert_to_safetensors(args.source, args.target)
    print(f"{args.target}: written as safetensors")
    return 0
