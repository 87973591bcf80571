"""`python -m backend export ...` and `python -m backend check-stage3 DIR`.

    python -m backend export --from-json EXPORT.json --images ROOT --out DIR [--label-config XML]
    python -m backend export --from-project ID --out DIR        (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)
        [--boxes-as-masks] [--include-accepted-predictions] [--no-sync]
    python -m backend check-stage3 DIR [--image-folder PATH]

Exit codes: 0 done (export: skipped regions are reported, not errors; check: no problem),
1 check found problems, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from backend.export.annotations import ExportOptions
from backend.export.build import ExportContext, LabelConfigInfo, export_tasks
from backend.export.errors import InputError
from backend.export.store import Stage3Store


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend export",
        description="Write a NExT-Chat stage-3 (RES) dataset from Label Studio annotations: "
                    "DIR/res.jsonl and DIR/images/.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-json", metavar="EXPORT.json", help="a Label Studio JSON export")
    source.add_argument("--from-project", metavar="ID", type=int,
                        help="export project ID through the Label Studio API")
    parser.add_argument("--images", metavar="ROOT",
                        help="folder holding the images of a JSON export (media folder, local-files root, ...)")
    parser.add_argument("--label-config", metavar="XML",
                        help="labeling config file (label prompts, image key) for --from-json")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--boxes-as-masks", action="store_true",
                        help="keep rectangles that have no mask region, with the box as their mask")
    parser.add_argument("--include-accepted-predictions", action="store_true",
                        help="also keep regions accepted from a prediction without any change")
    parser.add_argument("--no-sync", action="store_true",
                        help="keep entries of this project in DIR that are not in this export")
    return parser


def check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend check-stage3",
        description="Read a stage-3 folder back the way the release's RESDataset does; print counts "
                    "and every problem (exit 1 if any).",
    )
    parser.add_argument("dir", metavar="DIR")
    parser.add_argument("--image-folder", help="image folder the trainer will use (default DIR/images)")
    return parser


def read_json_export(path) -> list:
    try:
        tasks = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a JSON file ({type(exc).__name__})") from None
    if isinstance(tasks, dict) and "id" in tasks and "data" in tasks:
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise InputError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
    if tasks and not any("annotations" in task for task in tasks):
        raise InputError(f"{path}: tasks have no 'annotations' (use the JSON export, not JSON_MIN/CSV)")
    return tasks


def read_text_file(path) -> str:
    try:
        return Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({type(exc).__name__})") from None


def from_json_source(args):
    from backend.export.sources import LocalImageRoot

    if not args.images:
        raise InputError("--from-json needs --images ROOT (the folder holding the task images)")
    try:
        fetch = LocalImageRoot(args.images)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    xml = read_text_file(args.label_config) if args.label_config else None
    return read_json_export(args.from_json), fetch, xml


def from_project_source(args):
    """A context manager giving (tasks, image fetcher, label config XML) of the project."""
    from backend.export.project import ProjectExport

    if args.images or args.label_config:
        raise InputError("--images and --label-config go with --from-json; a project brings its own")
    return ProjectExport(args.from_project)


def format_report(report: dict, out_dir) -> str:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report["records_by_kind"].items())) or "none"
    lines = [
        f"wrote {out_dir}/res.jsonl: {report['records']} records ({kinds}) from "
        f"{report['annotations']} annotations, {report['images']} images in {out_dir}/images",
        f"skipped: {report['skipped']}",
    ]
    for reason, count in Counter(report["skipped_by_reason"]).most_common():
        lines.append(f"  {count:5d}  {reason}")
    lines.append(f"details: {out_dir}/report.json")
    return "\n".join(lines)


def main_export(argv: list[str] | None = None) -> int:
    args = export_parser().parse_args(argv)
    try:
        source = nullcontext(from_json_source(args)) if args.from_json else from_project_source(args)
        with source as (tasks, fetch, xml):
            try:
                store = Stage3Store(args.out)
            except OSError as exc:
                raise InputError(f"--out {args.out}: cannot create ({exc.strerror})") from None
            options = ExportOptions(args.boxes_as_masks, args.include_accepted_predictions)
            context = ExportContext(store, fetch, options, LabelConfigInfo.from_xml(xml))
            report = export_tasks(context, tasks, sync=not args.no_sync)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report, args.out))
    return 0


def main_check(argv: list[str] | None = None) -> int:
    from backend.export.check import check_stage3_dir, format_result

    args = check_parser().parse_args(argv)
    if not Path(args.dir).is_dir():
        print(f"error: {args.dir}: not a folder", file=sys.stderr)
        return 2
    result = check_stage3_dir(args.dir, args.image_folder)
    print(format_result(result, args.dir))
    return 0 if result.ok else 1


main = main_export
