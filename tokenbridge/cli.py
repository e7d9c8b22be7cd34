"""Command-line plumbing shared by the entry points: one-line argument errors and checked argument types.

Every entry point answers bad input with one line, ``prog: error: argument --x: problem``, and exit
status 2 (argparse's convention), before any model loads; never with a traceback. Argument types
check what the text alone says (ranges, choices); `check` runs a check that reads files (a file
exists and holds the right model, a folder can be written) and turns its error into that line.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable

from tokenbridge.devices import pick_device
from tokenbridge.sampling import KNOBS, SamplerSettings


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (no usage block), exit status 2; sub-parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


CHECK_ERRORS = (ValueError, TypeError, KeyError, OSError, RuntimeError)
"""What a failed check raises (a `CheckpointError` is a ValueError; a missing file an OSError)."""


def check(parser: argparse.ArgumentParser, flag: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, or exit 2 with ``argument FLAG: <its error>`` on one line."""
    try:
        return fn(*args, **kwargs)
    except CHECK_ERRORS as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        parser.error(f"argument {flag}: {' '.join(str(message).split())}")


# ------------------------------------------------------------------------------------------------
# Argument types (argparse reports ``argument --x: <message>``)
# ------------------------------------------------------------------------------------------------


def number(
    kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], int | float]:
    """An argparse type: ``kind`` (int or float, finite) within ``[low, high]``; ``*_open`` excludes an end."""
    lo = "" if low is None else f"{'(' if low_open else '['}{low}"
    hi = "" if high is None else f"{high}{')' if high_open else ']'}"
    what = "an integer" if kind is int else "a finite number"
    if low is not None and high is not None:
        what += f" in {lo}, {hi}"
    elif low is not None:
        what += f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        what += f" {'<' if high_open else '<='} {high}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        inside = (
            math.isfinite(value)
            and (low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high))
        )
        if not inside:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid ... value" fallback
    return parse


def sampler_argument(parser: argparse.ArgumentParser, name: str, **options) -> None:
    """Add the flag of the sampler knob ``name`` (a `SamplerSettings` field) as its `Knob` says: its
    choices, or a number checked like the sampler checks it; ``options`` (dest, default, nargs, help)
    go to ``add_argument``."""
    knob = KNOBS[name]
    if knob.choices is not None:
        checked = dict(choices=knob.choices)
    else:
        checked = dict(type=number(type(getattr(SamplerSettings(), name)), knob.low, low_open=knob.low_open))
    parser.add_argument(knob.flag, **checked, **options)


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:1``, …: a device torch knows and this machine has."""

    try:
        pick_device(text)
    except (RuntimeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable device ({str(e).splitlines()[0]})") from None
    return text


def existing_file(text: str) -> Path:
    """An argparse type: a path that names an existing file."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{'is a folder, not a file' if path.is_dir() else 'no such file'}: {text!r}")
    return path


def output_image(text: str) -> Path:
    """An argparse type: an image file to write; its folder exists and is writable, PIL knows its suffix."""
    from PIL import Image

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; name an image file, e.g. {str(path / 'out.png')!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {str(path.parent)!r} does not exist (create it first)")
    if not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"the folder {str(path.parent)!r} is not writable")
    if path.suffix.lower() not in Image.registered_extensions():
        raise argparse.ArgumentTypeError(
            f"unknown image format {path.suffix or '(no suffix)'!r} in {text!r}; use .png or .jpg"
        )
    return path


# ------------------------------------------------------------------------------------------------
# File checks for `check` (raise ValueError / OSError naming the path)
# ------------------------------------------------------------------------------------------------


def model_file(path: str | os.PathLike, kind: str) -> dict:
    """The header of our safetensors model file ``path`` holding a ``kind`` model (tensors left unread)."""
    from tokenbridge import checkpoints

    header = checkpoints.read_header(path)
    if header.get("kind") != kind:
        raise checkpoints.CheckpointError(f"{str(path)!r} holds a {header.get('kind')!r} model, expected {kind!r}")
    return header


def input_folder(path: str | os.PathLike) -> Path:
    """An existing folder to read."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{str(path)!r} is {'a file, not a folder' if path.exists() else 'not a folder'}")
    return path


def output_folder(path: str | os.PathLike) -> Path:
    """A folder to write into: it exists, or its nearest existing parent is a writable folder (it is created later)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{str(path)!r} is a file, not a folder")
    _writable_ancestor(path)
    return path


def output_file(path: str | os.PathLike) -> Path:
    """A file to write: not a folder, and its folder exists or can be created in a writable parent."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder, not a file")
    _writable_ancestor(path.parent)
    return path


def _writable_ancestor(folder: Path) -> None:
    """Raise unless the nearest existing ancestor of ``folder`` (itself included) is a writable folder."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot create {str(folder)!r}: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"cannot write in {str(existing)!r}")


def pipeline_file(path: str | os.PathLike, kind: str) -> str:
    """A ``kind`` file that `Pipeline.load` reads: our safetensors model (see `model_file`) or an
    official torch checkpoint, told apart by content; nothing is loaded."""
    from tokenbridge import checkpoints

    found = checkpoints.file_format(path)
    if found is None:
        raise checkpoints.CheckpointError(f"{str(path)!r} is neither a safetensors file nor a torch checkpoint")
    if found == "safetensors":
        model_file(path, kind)
    return str(path)
