"""`python -m backend finetune DATA_DIR --checkpoint CK --out RUN ...`: the stage-3 trainer (model.stage3) on
a folder that `python -m backend export` (or the live STAGE3_DIR) wrote. Same flags as
`python -m model.stage3`; exit status 0, or 2 with one line."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from model.stage3 import main as stage3_main

    return stage3_main(argv, prog="python -m backend finetune")
