"""Command line: ``python -m model IMAGE "TEXT" --checkpoint ... --vision-tower ...`` prints JSON.

Tasks: ``chat`` (default: TEXT as typed; boxes referenced as [0]), ``ground`` (TEXT is a referring
expression), ``describe`` (the first --box), ``caption`` (TEXT ignored), ``segment`` (a mask from
--box and/or --point clicks; with TEXT, the first region TEXT locates refined by the clicks). Masks are COCO RLE.
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
    parser.add_argument("--task", choices=["chat", "ground", "describe", "caption", "segment"], default="chat")
    parser.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="an input box in pixels (repeatable; reference it in TEXT as [0], [1])")
    parser.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                        help="a click in pixels for --task segment, LABEL 1 positive (default) or 0 negative")
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


def parse_point(text: str) -> tuple[tuple[float, float], int]:
    values = text.split(",")
    if len(values) not in (2, 3) or (len(values) == 3 and values[2].strip() not in ("0", "1")):
        raise ValueError(f"--point needs X,Y or X,Y,LABEL with LABEL 0 or 1, got {text!r}")
    return (float(values[0]), float(values[1])), int(values[2]) if len(values) == 3 else 1


def segment(nc, image, text: str, boxes, clicks) -> list:
    if len(boxes) > 1:
        raise ValueError("--task segment takes one --box")
    points, labels = [p for p, _ in clicks], [label for _, label in clicks]
    if text:
        if boxes:
            raise ValueError("--task segment with TEXT refines the region TEXT locates: give --point, not --box")
        return [nc.refine(image, text, points, labels)]
    if not boxes and not points:
        raise ValueError("--task segment needs --box or --point (or TEXT to refine)")
    return [nc.segment(image, box=boxes[0] if boxes else None, points=points, point_labels=labels)]


def run(args) -> dict:
    import torch  # noqa: F401  (imported here so --help is fast)
    from PIL import Image

    from . import NextChat
    from .processing import to_rgb

    boxes = [parse_box(b) for b in args.box]
    clicks = [parse_point(p) for p in args.point]
    image = to_rgb(Image.open(args.image))
    nc = NextChat.from_pretrained(args.checkpoint, vision_tower=args.vision_tower, device=args.device,
                                  dtype=args.dtype, delta=args.delta)
    if args.task == "ground":
        regions, answer = nc.ground(image, args.text, max_new_tokens=args.max_new_tokens), None
    elif args.task == "describe":
        if not boxes:
            raise ValueError("--task describe needs --box")
        regions, answer = [], nc.describe(image, boxes[0], max_new_tokens=args.max_new_tokens)
    elif args.task == "segment":
        regions, answer = segment(nc, image, args.text, boxes, clicks), None
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
