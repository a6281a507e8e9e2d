"""Many pictures, one model load: `avow upscale IN... -o DIR`.

Each picture goes through ``upscale_file`` on its own, so each output is disclosed and signed on its
own and a failure leaves no file behind for that picture; the next one still runs. Only a
cancellation (Ctrl-C, SIGTERM) stops the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from avow_c2pa.errors import ProvenanceError
from avow_c2pa.formats import OUTPUT_SUFFIXES  # the formats Avow reads are the ones it writes

from .engine import UpscaleOptions, UpscaleResult, prepare_model, upscale_file
from .errors import AvowError, Cancelled, UsageError


@dataclass(frozen=True)
class Outcome:
    source: Path
    target: Path
    result: UpscaleResult | None = None
    error: Exception | None = None


def plan(inputs: list[Path], folder: Path, scale: int) -> list[tuple[Path, Path]]:
    """(source, target) pairs: folders give the pictures directly in them; each target is
    ``<stem>-x<scale><suffix>`` in ``folder``, in the input's format."""
    sources: list[Path] = []
    for path in inputs:
        if path.is_dir():
            sources += sorted(p for p in path.iterdir() if p.suffix.lower() in OUTPUT_SUFFIXES and p.is_file())
        else:
            sources.append(path)
    if not sources:
        raise UsageError(f"no pictures to upscale in {', '.join(map(str, inputs))}")
    pairs = [(source, folder / f"{source.stem}-x{scale}{source.suffix.lower()}") for source in sources]
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if target in seen:
            raise UsageError(f"{seen[target]} and {source} would both be written to {target}; rename one")
        seen[target] = source
    return pairs


def upscale_many(
    inputs: list[Path],
    folder: Path,
    options: UpscaleOptions,
    on_progress: Callable[[float, int], None] | None = None,
) -> Iterator[Outcome]:
    """Upscale every picture ``inputs`` name into ``folder``, yielding each outcome as it ends.

    ``on_progress(done, total)`` counts pictures, with the current one's tiles as a fraction."""
    model = prepare_model(options)  # once: a bad model or scale fails the whole batch up front
    pairs = plan(inputs, folder, model.descriptor.scale)
    folder.mkdir(parents=True, exist_ok=True)
    for index, (source, target) in enumerate(pairs):

        def progress(done: int, total: int, index=index) -> None:
            if on_progress is not None:
                on_progress(index + done / total, len(pairs))

        try:
            result = upscale_file(source, target, options, on_progress=progress, model=model)
        except Cancelled:
            raise
        except (AvowError, ProvenanceError, LookupError, ValueError, OSError, MemoryError) as exc:
            yield Outcome(source, target, error=exc)
        else:
            yield Outcome(source, target, result=result)
        if on_progress is not None:
            on_progress(index + 1, len(pairs))
