"""``polarnet template extract | info | proportions``: make and inspect polarity template files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .options import output_file

if TYPE_CHECKING:  # the library is imported inside the commands: see polarnet.cli.main
    from ..layers import LayerSpec
    from ..template import PolarityTemplate

__all__ = ["add_commands", "format_info"]


def _layers(text: str) -> LayerSpec:
    """``all``/a kind (``conv``, ``linear``, ``embedding``…)/a registered kind's name/a glob, or a
    comma-separated list of parameter names."""
    return [n.strip() for n in text.split(",") if n.strip()] if "," in text else text


def _extract(args: argparse.Namespace) -> int:
    from ..sources import load_state_dict
    from ..template import PolarityTemplate

    output_file(args.output, args.source, suffix=".plt")
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
        >>> from polarnet import PolarityTemplate
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
    from ..template import PolarityTemplate

    template = PolarityTemplate.load(args.file)
    print(format_info(template, Path(args.file).stat().st_size))
    return 0


def _proportions(args: argparse.Namespace) -> int:
    from ..proportions import save_proportions
    from ..template import PolarityTemplate

    output_file(args.output, args.file, suffix=".json")
    template = PolarityTemplate.load(args.file)
    numel = {name: t.numel() for name, t in template.items()}
    path = save_proportions(template.proportions(), args.output, numel)
    print(f"wrote {path}: proportions of {len(numel)} layers")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``template`` and its verbs to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> commands.choices["template"].parse_args(["info", "t.plt"]).file
        't.plt'
    """
    template = commands.add_parser("template", help="make and inspect polarity template files")
    verbs = template.add_subparsers(dest="verb", required=True)

    extract = verbs.add_parser(
        "extract", help="save the signs of a model's weights as a template file",
        description="Save the signs of a model's weights as a template file. Named weights load through their "
                    "library's cache (torch hub: $TORCH_HOME/hub; Hugging Face: $HF_HUB_CACHE, else $HF_HOME/hub), "
                    "so they work offline once there; with HF_HUB_OFFLINE=1 nothing is downloaded.")
    extract.add_argument("source", help="a .pt/.pth/.safetensors state dict; a torchvision weights name such as "
                                        "AlexNet_Weights.IMAGENET1K_V1; timm:MODEL, timm's pretrained weights "
                                        "(e.g. timm:resnet18.a1_in1k); or hf:ORG/NAME[@REVISION], a Hugging Face "
                                        "model repo's weights file (e.g. hf:prajjwal1/bert-tiny)")
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
