"""The ``polarnet`` command: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .layers import LayerSpec
from .proportions import save_proportions
from .sources import load_state_dict
from .template import PolarityTemplate

__all__ = ["main", "build_parser"]


def _layers(text: str) -> LayerSpec:
    """``all``/``conv``/``linear``/a glob, or a comma-separated list of parameter names."""
    return [n.strip() for n in text.split(",") if n.strip()] if "," in text else text


def _extract(args: argparse.Namespace) -> int:
    state = load_state_dict(args.source)
    template = PolarityTemplate.from_model(state, layers=args.layers, bias=args.bias)
    template.meta.update({"extracted_from": str(args.source)})
    path = template.save(args.output)
    print(f"wrote {path}: {len(template)} layers, {template.numel():,} weights, {path.stat().st_size:,} bytes")
    return 0


def format_info(template: PolarityTemplate, size_on_disk: int) -> str:
    """The per-layer table printed by ``polarnet template info``.

    Example:
        >>> import torch
        >>> print(format_info(PolarityTemplate({"w": torch.tensor([1, -1, 0, 1])}), 100).splitlines()[1])
        w                                        (4,)                   0.2500  0.2500  0.5000
    """
    lines = [f"{'layer':<40} {'shape':<22} {'p0':>6}  {'p-':>6}  {'p+':>6}"]
    for name, (p0, pn, pp) in template.proportions().items():
        lines.append(f"{name:<40} {str(tuple(template[name].shape)):<22} {p0:.4f}  {pn:.4f}  {pp:.4f}")
    float_bytes = 4 * template.numel()
    lines.append(f"{len(template)} layers, {template.numel():,} weights")
    lines.append(f"size on disk: {size_on_disk:,} bytes; float32 weights: {float_bytes:,} bytes; "
                 f"compression {float_bytes / max(1, size_on_disk):.1f}x")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    template = PolarityTemplate.load(args.file)
    print(format_info(template, Path(args.file).stat().st_size))
    return 0


def _proportions(args: argparse.Namespace) -> int:
    template = PolarityTemplate.load(args.file)
    numel = {name: t.numel() for name, t in template.items()}
    path = save_proportions(template.proportions(), args.output, numel)
    print(f"wrote {path}: proportions of {len(numel)} layers")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polarnet`` command."""
    parser = argparse.ArgumentParser(prog="polarnet", description="Fixed-polarity training and polarity transfer.")
    commands = parser.add_subparsers(dest="command", required=True)

    template = commands.add_parser("template", help="make and inspect polarity template files")
    verbs = template.add_subparsers(dest="verb", required=True)

    extract = verbs.add_parser("extract", help="save the signs of a model's weights as a template file")
    extract.add_argument("source", help="a .pt/.pth/.safetensors state dict, or a torchvision weights name "
                                        "such as AlexNet_Weights.IMAGENET1K_V1")
    extract.add_argument("-o", "--output", required=True, help="template file to write (.plt)")
    extract.add_argument("--layers", type=_layers, default="all",
                         help="all | conv | linear | a glob on names | a comma-separated list (default: all)")
    extract.add_argument("--bias", action="store_true", help="include the biases of the selected layers")
    extract.set_defaults(func=_extract)

    info = verbs.add_parser("info", help="per-layer sign proportions and size of a template file")
    info.add_argument("file")
    info.set_defaults(func=_info)

    props = verbs.add_parser("proportions", help="write the SPIN distribution (p0, p-, p+ per layer) as JSON")
    props.add_argument("file")
    props.add_argument("-o", "--output", required=True, help="JSON file to write")
    props.set_defaults(func=_proportions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polarnet`` command; returns the exit status.

    Example:
        >>> main(["template", "info", "/nonexistent.plt"])
        2
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"polarnet: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
