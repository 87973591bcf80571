"""`python -m backend batch --from-project ID`: pre-label the tasks of an existing Label Studio project.

    python -m backend batch --from-project ID [--filter JSON | --view VIEW] [--state FILE] [--restart]
        [--select-version] [--ray auto|ADDRESS ...] --checkpoint ... --vision-tower ...

LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY say where and as whom. The project's labeling config and its
connected ML backend's extra params are used as the server would use them (flags like
--score-threshold override both), so the predictions carry the version "Retrieve predictions" would
give and are not computed twice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backend.batch.job import JobError
from backend.batch.ls_project import LabelStudioProject, ProjectError, parse_filter
from backend.batch.project_job import ProjectJob, run_project_job
from backend.batch.state import StateError
from backend.predict.errors import ModelUnavailable
from backend.predict.projects import ParamsError, parse_extra_params
from backend.settings import SECRET_FIELDS, SettingsError, load_settings

FLAG_PARAMS = ("score_threshold", "mask_iou_threshold", "polygon_tolerance")


def state_path(args) -> Path:
    return Path(args.state) if args.state else Path(f"nextchat-batch-from-project-{args.from_project}.state.jsonl")


def project_params(project: LabelStudioProject, args, settings) -> dict:
    try:
        params = parse_extra_params(project.backend_extra_params(), settings)
    except ParamsError as exc:
        raise JobError(f"the project's ML backend {exc}") from None
    params.update({name: getattr(args, name) for name in FLAG_PARAMS if getattr(args, name) is not None})
    return params


def labelling(args, label_config: str, settings, params):
    """(labels(fetched tasks) -> records, model version, cleanup) here or on Ray."""
    if args.ray:
        from backend.batch.ray_tasks import RayTaskPool
        from backend.batch.runner import RayOptions

        blanked = settings.replace(**{name: "" for name in SECRET_FIELDS})
        pool = RayTaskPool(label_config, blanked, params,
                           RayOptions(args.ray, args.ray_cpus_per_replica, args.ray_replicas))
        return pool.labels, pool.model_version, pool.close
    from backend.batch.task_labeler import TaskLabeler

    labeler = TaskLabeler(label_config, settings, params)
    return (lambda tasks: (labeler.label(task) for task in tasks)), labeler.model_version, lambda: None


def run(args, env=None) -> dict:
    settings = load_settings(env, checkpoint=args.checkpoint, vision_tower=args.vision_tower, device=args.device,
                             dtype=args.dtype)
    if not settings.checkpoint:
        raise JobError("no checkpoint: pass --checkpoint or set NEXTCHAT_CHECKPOINT")
    try:
        filters = parse_filter(args.filter)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if not settings.label_studio_url or not settings.label_studio_api_key:
        raise JobError("--from-project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the environment")
    project = LabelStudioProject(settings.label_studio_url, settings.label_studio_api_key, args.from_project,
                                 page_size=args.page_size)
    label_config = project.label_config()
    params = project_params(project, args, settings)
    labels, model_version, cleanup = labelling(args, label_config, settings, params)
    from backend.images import ImageLoader
    from backend.predict.config import parse_config

    job = ProjectJob(project, label_config, parse_config(label_config, settings),
                     ImageLoader(settings, credentials=project.credentials), view=args.view, filters=filters)
    try:
        summary = run_project_job(job, labels, model_version, state_path(args), restart=args.restart,
                                  show_progress=not args.no_progress)
    finally:
        cleanup()
    for key, reason in summary.failures:
        print(f"failed: task {key}: {reason}", file=sys.stderr)
    if args.select_version:
        project.select_version(model_version)
        print(f"project {args.from_project}: prelabeling now uses model version {model_version}", file=sys.stderr)
    else:
        print(f"model version: {model_version}\n  choose it in the project's Settings -> Annotation -> Prelabeling "
              "('Use predictions to prelabel tasks'), or rerun with --select-version", file=sys.stderr)
    return {"project": args.from_project, **summary.as_dict()}


def main_from_project(args, env=None) -> int:
    if args.images or args.labels or args.label_config or args.out or args.project is not None:
        print("error: --from-project reads the project's tasks and config; drop --images/--labels/--label-config/"
              "--out/--project", file=sys.stderr)
        return 2
    if args.filter and args.view is not None:
        print("error: give --filter or --view, not both", file=sys.stderr)
        return 2
    try:
        report = run(args, env)
    except (JobError, StateError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ModelUnavailable, ProjectError) as exc:
        print(f"error: {exc}; rerun to resume", file=sys.stderr)
        return 3
    print(json.dumps({"summary": report}))
    return 0
