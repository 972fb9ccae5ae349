"""``polarnet pretrain``: train a source model to transfer polarities from (offline studies)."""

from __future__ import annotations

import argparse
import sys

from .options import at_least, output_file

__all__ = ["add_commands"]


def _classes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated class indices, e.g. ``0,1,2``."""
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated class indices, e.g. 0,1,2,3,4") from None


def _pretrain(args: argparse.Namespace) -> int:
    from ..experiments.pretrain import PretrainFailed, pretrain

    classes = args.classes or ()
    output_file(args.output, suffix=".pt")
    try:
        metrics = pretrain(args.dataset, args.output, arch=args.arch, classes=classes, n_train=args.n_train,
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, input_size=args.input_size,
                           seed=args.seed, device=args.device, data_root=args.data_root, download=args.download,
                           progress=sys.stderr)
    except PretrainFailed as e:
        print(f"polarnet: {e}", file=sys.stderr)
        return 1
    shown = ",".join(map(str, classes))
    print(f"wrote {args.output}: {args.arch} on {args.dataset}{' classes ' + shown if classes else ''}, "
          f"{metrics['n_train']} images, validation accuracy {metrics['val_acc']:.3f}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``pretrain`` to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> args = commands.choices["pretrain"].parse_args(["--dataset", "mnist", "--classes", "0,1", "-o", "s.pt"])
        >>> args.classes, args.arch, args.n_train
        ((0, 1), 'lenet', 6000)
    """
    pre = commands.add_parser("pretrain", help="train a source model to transfer polarities from (offline studies)")
    pre.add_argument("--dataset", required=True, help="fashion_mnist | mnist | cifar10")
    pre.add_argument("--classes", type=_classes, help="comma-separated class indices, e.g. 0,1,2,3,4 (default: all)")
    pre.add_argument("--arch", default="lenet",
                     help="a registered model or your own, 'package.module:function' (default lenet)")
    pre.add_argument("-o", "--output", required=True, help="state-dict file to write (.pt)")
    pre.add_argument("--n-train", type=at_least(1), default=6000)
    pre.add_argument("--epochs", type=at_least(1), default=5)
    pre.add_argument("--batch-size", type=at_least(1), default=100)
    pre.add_argument("--lr", type=float, default=1e-3)
    pre.add_argument("--input-size", type=at_least(0), default=0, help="resize to this size (0: the data's own)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--device", default="auto")
    pre.add_argument("--data-root", help="where the dataset files are (see docs/images.md)")
    pre.add_argument("--download", action="store_true", help="let torchvision download the data")
    pre.set_defaults(func=_pretrain)
