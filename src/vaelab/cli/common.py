"""Pieces shared by the subcommands: registering them, the options several take, and the checks on
what the user gave.

Every check here raises a :class:`~vaelab.errors.UserError` kind that names the option as the user
spelled it; ``vaelab.cli.main`` prints those as one line (exit status 2) and lets anything else, a
bug, show its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vaelab.data.config import DataConfig, DatasetName
from vaelab.errors import DataError, SetupError, UsageError, UserError
from vaelab.models.vae import resolve_model_dir

# What the CLI reports as the user's mistake: one line, exit status 2, no traceback. Only UserError:
# an OSError or ValueError from deep inside is a bug until a check that knows its cause converts it
# (see ``writing`` for the files the user named as outputs).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)

Run = Callable[[argparse.Namespace], int]


def add_command(sub: argparse._SubParsersAction, name: str, run: Run) -> argparse.ArgumentParser:
    """Register subcommand ``name`` calling ``run``: its help in ``vaelab --help`` is the first
    paragraph of ``run``'s docstring and its ``--help`` description the whole docstring, so what a
    command does is written once, beside the code that does it."""
    doc = (run.__doc__ or name).strip()
    summary = " ".join(doc.split("\n\n")[0].split())
    parser = sub.add_parser(name, help=summary, description=" ".join(doc.split()))
    parser.set_defaults(func=run)
    return parser


def add_model_command(
    sub: argparse._SubParsersAction,
    name: str,
    run: Run,
    *,
    data: bool = True,
    split: bool = True,
    device: bool = True,
) -> argparse.ArgumentParser:
    """A subcommand on a trained MODEL (see ``add_command``): the positional MODEL, then, unless
    turned off, the data options (default: the model's own dataset), --split and --device."""
    parser = add_command(sub, name, run)
    parser.add_argument("model", metavar="MODEL", help="a run directory or a saved-model directory")
    if data:
        add_data_options(parser, "the dataset the model was trained on")
    if split:
        add_split_option(parser)
    if device:
        add_device_option(parser)
    return parser


def add_split_option(p: argparse.ArgumentParser, default: str = "test") -> None:
    """--split train|test."""
    p.add_argument("--split", choices=["train", "test"], default=default, help=f"which split ({default})")


def add_data_options(p: argparse.ArgumentParser, default_hint: str) -> None:
    """--dataset / --data-dir / --data-path, the same in every command that reads images."""
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="digits (embedded, offline), mnist, fashion-mnist, dsprites (procedural, with factors), "
        "folder, npz or packed; a directory (image folder or packed dataset) or a .npz path also works "
        "and implies the kind. "
        f"Default: {default_hint}.",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="root holding mnist/ and fashion-mnist/ (default: $VAELAB_DATA, else ~/.cache/vaelab/data)",
    )
    p.add_argument("--data-path", metavar="PATH", help="image folder or .npz file for --dataset folder|npz")


def add_device_option(
    p: argparse.ArgumentParser, default: str | None = "auto", help: str | None = None
) -> None:
    """--device, the same choices in every command."""
    p.add_argument(
        "--device",
        default=default,
        choices=["auto", "cpu", "cuda", "mps"],
        help=help or f"where to run (default {default}; auto: a GPU if there is one)",
    )


def source_fields(source: str) -> dict[str, Any]:
    """Data-config fields for a ``--dataset`` value: a dataset name, a .npz file, or a directory (an
    image folder, or a packed dataset when it holds index.json). Anything else is a UsageError: a
    misspelt name and a missing folder look alike, so the message offers both readings."""
    path = Path(source)
    if source.endswith(".npz"):
        return {"name": "npz", "path": str(path)}
    names = DatasetName.__args__
    if source in names:
        return {"name": source}
    if path.is_dir():
        packed = (path / "index.json").is_file()
        return {"name": "packed" if packed else "folder", "path": str(path)}
    raise UsageError(
        f"dataset {source!r} is neither a dataset name ({', '.join(names)}) nor an existing folder or "
        ".npz file"
    )


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The data-config fields the data options set (only those the user gave)."""
    out: dict[str, Any] = source_fields(args.dataset) if args.dataset is not None else {}
    if args.data_dir is not None:
        out["data_dir"] = args.data_dir
    if args.data_path is not None:
        out["path"] = args.data_path
    return out


def validated_data_config(fields: dict[str, Any], source: str) -> DataConfig:
    """``fields`` as a DataConfig, or a ConfigError naming each bad field (as ``data.<field>``), the
    same message ``vaelab train`` gives for them."""
    from vaelab.config import build_config

    return build_config({"data": fields}, source).data


def model_data_config(args: argparse.Namespace) -> DataConfig:
    """The data a command on ``args.model`` reads: what the model was trained on, overridden by the
    data options the user gave."""
    fields = {**saved_data_config(args.model), **data_overrides(args)}
    return validated_data_config(fields, f"{args.model}'s data config + data options")


def saved_data_config(model_path: str | Path) -> dict[str, Any]:
    """The data config a saved model was trained with (stored beside it), or {} if unknown."""
    directory = resolve_model_dir(model_path)
    try:
        return dict(json.loads((directory / "config.json").read_text()).get("data") or {})
    except (OSError, json.JSONDecodeError):
        return {}


def check_image_shape(dataset: Any, model: Any) -> None:
    """DataError unless the dataset's images have the shape ``model`` was built for: a model fed
    another dataset's images fails deep inside a layer with a message about tensors."""
    if tuple(dataset.image_shape) != tuple(model.image_shape):
        raise DataError(
            f"dataset {dataset.name!r} has images of shape {tuple(dataset.image_shape)} but the model "
            f"expects {tuple(model.image_shape)}: give the dataset it was trained on (--dataset)"
        )


def load_model(args: argparse.Namespace) -> Any:
    """The VAE named by ``args.model`` on the device ``args.device`` asks for."""
    from vaelab.models import VAE
    from vaelab.runtime import resolve_device

    return VAE.from_pretrained(args.model, device=resolve_device(args.device))


def load_model_and_data(args: argparse.Namespace, split: str, progress: bool = False) -> tuple[Any, Any]:
    """The model ``args.model`` names and the ``split`` of its data (see ``model_data_config``) as an
    in-memory ImageDataset, checked to hold images of the shape the model takes."""
    from vaelab.data import load_dataset
    from vaelab.evaluation import in_memory

    model = load_model(args)
    dataset = in_memory(load_dataset(model_data_config(args), split, progress=progress))
    check_image_shape(dataset, model)
    return model, dataset


def check_at_least(value: float | None, minimum: float, option: str) -> None:
    """UsageError naming ``option`` unless ``value`` (when given) is at least ``minimum``."""
    if value is not None and value < minimum:
        raise UsageError(f"{option} must be at least {minimum}; got {value}")


def check_minimums(args: argparse.Namespace, minimums: dict[str, float]) -> None:
    """``check_at_least`` for each option ``--name`` of ``{"name": minimum}`` that ``args`` holds."""
    for dest, minimum in minimums.items():
        check_at_least(getattr(args, dest), minimum, "--" + dest.replace("_", "-"))


def check_suffix(path: str, suffixes: tuple[str, ...], option: str) -> None:
    """UsageError naming ``option`` unless ``path`` ends in one of ``suffixes``: the suffix picks the
    file format, so a wrong one is caught before any work is done."""
    if not path.endswith(suffixes):
        raise UsageError(f"{option} must end in {' or '.join(suffixes)}; got {path}")


@contextlib.contextmanager
def writing(option: str, path: str | Path) -> Iterator[None]:
    """Around the writing of an output the user named: an OSError about that path (the file, a temporary
    file beside it, a folder above or inside it) or a full disk is the user's to fix (a parent that is a
    file, no write permission), so it becomes a UsageError naming ``option``. Any other OSError stays a
    bug with its traceback."""
    try:
        yield
    except UserError:
        raise  # already says what is wrong (some kinds are OSErrors too)
    except OSError as exc:
        if not _about(exc, Path(path)):
            raise
        reason = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        raise UsageError(f"cannot write {option} {path} ({reason})") from exc


def _about(exc: OSError, target: Path) -> bool:
    """Whether ``exc`` is about ``target`` itself, a file beside it (an atomic write's temporary), a
    folder above it or a file inside it, or says the disk is full."""
    if exc.filename is None:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    name, target = Path(os.fsdecode(exc.filename)).absolute(), target.absolute()
    return name.parent == target.parent or name in target.parents or target in name.parents


def require_extra(extra: str, what: str, *modules: str) -> None:
    """SetupError unless every one of ``modules`` imports: ``what`` needs the optional ``extra``, which
    the message says how to install (a missing extra is the installation's state, not a bug)."""
    import importlib

    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as exc:
        raise SetupError(f"{what} needs the '{extra}' extra (pip install 'vaelab[{extra}]'): {exc}") from None
