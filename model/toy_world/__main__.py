"""``python -m model.toy_world --seed S --count N --out DIR``: write toy scenes with their ground truth.

Writes DIR/images/, DIR/scenes.jsonl and DIR/res.jsonl (see export.py) and prints one summary line.
Exit status 0 on success, 2 with one line on stderr for bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from ..reasons import one_line
from .export import FORMATS, write_dataset
from .world import STYLES


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m model.toy_world",
                           description="Deterministic toy scenes with boxes, masks, expressions and captions.")
    parser.add_argument("--seed", type=int, required=True, help="scene i of seed S is the same for any count")
    parser.add_argument("--count", type=int, required=True, help="scenes 0 .. N-1")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--long-side", type=int, default=256, help="pixels of each image's long side")
    parser.add_argument("--style", choices=STYLES, default="plain", help="object fill")
    parser.add_argument("--format", choices=FORMATS, default="png", help="image files (mixed: alternate)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if not 16 <= args.long_side <= 4096:
        parser.error(f"--long-side must be 16 to 4096 pixels, got {args.long_side}")
    try:
        scenes, objects = write_dataset(args.out, args.seed, args.count, args.long_side, args.style, args.format)
    except OSError as err:
        print(f"{parser.prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"{scenes} scenes, {objects} objects written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
