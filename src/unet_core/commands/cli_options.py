"""Command-line options built from the settings dataclasses, shared by the commands.

An option's flag, type, choices, help and default come from its dataclass field
(:class:`~unet_core.inference.options.PredictOptions` for ``predict`` and ``batch``,
:mod:`unet_core.training.config` for ``finetune`` and ``train``), so every command
offers the same options with the same defaults.
"""
from __future__ import annotations

import argparse
import dataclasses

from ..errors import InputError
from ..inference.devices import DEFAULT_DEVICE
from ..inference.options import PredictOptions
from ..models.modelio import DEFAULT_MODEL


def add_config_options(parser, config_cls, names, overrides: bool = False,
                       checked: bool = False) -> None:
    """Add the options of ``names`` (fields of a settings dataclass) to ``parser``.

    Flag, type, choices, help and default come from the field: ``--batch-size`` for
    ``batch_size``, ``--no-augment`` for a True default a flag turns off (metadata
    ``flag``), ``--tta`` for a False default it turns on.  With ``overrides`` the
    options default to None (not given: the config's own value).  With ``checked``
    the dataclass checks each typed value as it is parsed (an argparse error names
    the option).
    """
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    for name in names:
        f = by_name[name]
        meta = f.metadata
        if meta.get("flag"):
            parser.add_argument(meta["flag"], dest=name, action="store_false", help=meta["help"])
            continue
        option = "--" + name.replace("_", "-")
        if f.default is False:
            parser.add_argument(option, action="store_true", help=meta["help"])
            continue
        extra = {k: meta[k] for k in ("type", "metavar", "choices") if meta.get(k)}
        if checked and meta.get("type"):
            extra["type"] = _checked(config_cls, name, meta["type"])
        default = None if overrides else f.default
        told = "overrides the config" if overrides else \
            (f"default {f.default}" if f.default is not None else "")
        parser.add_argument(option, default=default, **extra,
                            help=f"{meta['help']} ({told})" if told else meta["help"])


def add_predict_options(parser: argparse.ArgumentParser) -> None:
    """The inference options of ``predict`` and ``batch``: --model and every
    command-line field of :class:`~unet_core.inference.options.PredictOptions`."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"bundled/user model name or folder (default {DEFAULT_MODEL})")
    add_config_options(parser, PredictOptions, PredictOptions.names(cli=True), checked=True)


def predict_options(args: argparse.Namespace) -> PredictOptions:
    """The :class:`~unet_core.inference.options.PredictOptions` of parsed arguments."""
    return PredictOptions(**{k: getattr(args, k) for k in PredictOptions.names(cli=True)})


def _checked(config_cls, name: str, kind):
    """argparse type: ``kind`` of the text, as the dataclass ``config_cls`` takes it for
    the field ``name``."""
    def parse(text: str):
        value = kind(text)
        try:
            return getattr(config_cls(**{name: value}), name)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = kind.__name__     # argparse names the type in its messages
    return parse


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """--device, for the commands that train."""
    parser.add_argument("--device", default=DEFAULT_DEVICE,
                        help=f"auto, cpu, cuda, mps (default {DEFAULT_DEVICE})")


def add_command(sub, name: str, func, help_text: str, description: str):
    """A ``napari-unet`` sub-command ``name`` run by ``func(args)``; returns its parser."""
    parser = sub.add_parser(name, help=help_text, description=description)
    parser.set_defaults(func=func)
    return parser
