"""Command line: ``python -m model IMAGE "TEXT" --checkpoint ... --vision-tower ...`` prints JSON.

Tasks: ``chat`` (default: TEXT as typed; boxes referenced as [0]), ``ground`` (TEXT is a referring
expression), ``describe`` (the first --box), ``caption`` (TEXT ignored). Masks are COCO RLE.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .overlay import draw_overlay, encode_rle
from .reasons import one_line


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m model", description="NExT-Chat on one image")
    parser.add_argument("image")
    parser.add_argument("text", nargs="?", default="")
    parser.add_argument("--checkpoint", required=True, help="NExT-Chat checkpoint folder or hub id")
    parser.add_argument("--vision-tower", default=None, help="CLIP tower folder or hub id")
    parser.add_argument("--task", choices=["chat", "ground", "describe", "caption"], default="chat")
    parser.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="an input box in pixels (repeatable; reference it in TEXT as [0], [1])")
    parser.add_argument("--delta", default=None, metavar="PATH",
                        help="a stage-3 delta (RUN/delta.safetensors from python -m model.stage3) to apply")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--iou-threshold", type=float, default=0.0, help="drop masks below this SAM iou")
    parser.add_argument("--overlay", default=None, help="save the image with boxes and masks drawn here")
    return parser.parse_args(argv)


def parse_box(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != 4:
        raise ValueError(f"--box needs 4 comma-separated numbers, got {text!r}")
    return values


def run(args) -> dict:
    import torch  # noqa: F401  (imported here so --help is fast)
    from PIL import Image

    from . import NextChat
    from .processing import to_rgb

    boxes = [parse_box(b) for b in args.box]
    image = to_rgb(Image.open(args.image))
    nc = NextChat.from_pretrained(args.checkpoint, vision_tower=args.vision_tower, device=args.device,
                                  dtype=args.dtype, delta=args.delta)
    if args.task == "ground":
        regions, answer = nc.ground(image, args.text, max_new_tokens=args.max_new_tokens), None
    elif args.task == "describe":
        if not boxes:
            raise ValueError("--task describe needs --box")
        regions, answer = [], nc.describe(image, boxes[0], max_new_tokens=args.max_new_tokens)
    elif args.task == "caption":
        caption = nc.caption(image, max_new_tokens=args.max_new_tokens)
        regions, answer = caption.regions, caption.text
    else:
        result = nc.generate(image, args.text, boxes=boxes or None, max_new_tokens=args.max_new_tokens,
                             num_beams=args.num_beams)
        answer = result.text
        regions = nc.regions(result, [""] * len(result.boxes))
    regions = [r for r in regions if r.score >= args.iou_threshold]
    if args.overlay:
        draw_overlay(image, regions, boxes).save(args.overlay)
    return {
        "answer": answer,
        "image_size": [image.width, image.height],
        "regions": [{"box_xyxy": [round(v, 2) for v in r.box], "score": round(r.score, 4), "phrase": r.phrase,
                     "mask_rle": encode_rle(r.mask)} for r in regions],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    try:
        output = run(args)
    except Exception as err:  # noqa: BLE001 - the CLI's contract is one line, no traceback
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
