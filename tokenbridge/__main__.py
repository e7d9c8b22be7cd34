"""Command line: ``python -m tokenbridge sample --class 3 --n 16 --order confidence --out grid.png``.

Training and evaluation have their own entry points (``python -m tokenbridge.train``,
``python -m tokenbridge.evaluate``).
"""

from __future__ import annotations

import argparse
import sys

from tokenbridge.pipeline import SAMPLER_DEFAULTS


def _sample(args) -> None:
    from PIL import Image

    from tokenbridge.data import image_grid
    from tokenbridge.pipeline import Pipeline

    pipe = (Pipeline.load("embedded", device=args.device) if args.vae is None and args.generator is None
            else Pipeline.load(vae=args.vae, generator=args.generator, device=args.device))  # fmt: skip
    if args.class_name is not None:
        if args.class_name not in pipe.classes:
            raise SystemExit(f"unknown class {args.class_name!r}; valid: {', '.join(pipe.classes)}")
        args.class_id = pipe.classes.index(args.class_name)
    if args.per_class is not None:  # one row per class
        labels = [c for c in range(len(pipe.classes)) for _ in range(args.per_class)]
        args.columns, what = args.per_class, f"{args.per_class} per class, one row each"
    elif args.class_id is not None:
        labels, what = [args.class_id] * args.n, f"class {args.class_id}"
    else:
        labels, what = None, "unconditional"
    sampler = {k: getattr(args, k) for k in SAMPLER_DEFAULTS}
    count = len(labels) if labels is not None else args.n
    try:
        images = pipe.generate(labels, seed=args.seed, batch_size=count, **sampler)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    Image.fromarray(image_grid(images, columns=args.columns)).save(args.out)
    print(f"wrote {args.out} ({count} images, {what})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tokenbridge")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="generate a grid of images")
    s.add_argument("--class", dest="class_id", type=int, help="class id (omit for unconditional)")
    s.add_argument("--class-name", help="class by name, e.g. star")
    s.add_argument("--per-class", type=int, help="a grid with this many samples of every class, one row each")
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--columns", type=int, default=8)
    s.add_argument("--vae", help="VAE file (default: the embedded one)")
    s.add_argument("--generator", help="generator file (default: the embedded one)")
    s.add_argument("--device", default="auto")
    s.add_argument("--out", default="samples.png")
    for name, value in SAMPLER_DEFAULTS.items():
        flag = "--steps" if name == "num_steps" else "--" + name.replace("_", "-")
        s.add_argument(flag, dest=name, type=type(value), default=value)
    args = parser.parse_args(argv)
    if args.n < 1 or (args.per_class is not None and args.per_class < 1):
        parser.error("--n and --per-class must be >= 1")
    _sample(args)


if __name__ == "__main__":
    sys.exit(main())
