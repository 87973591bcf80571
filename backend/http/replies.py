"""The replies of the routes (backend.http.app): /health and /ready, /setup (per-project settings and
versions), /predict (never a 413 for a Label Studio batch; interactive refusals made visible), /webhook
(live export events, Start Training)."""

from __future__ import annotations

import logging

from backend.deadline import Deadline
from backend.export.live import LIVE_EVENTS
from backend.http.admission import Overloaded
from backend.http.body import BadRequest, checked_config, parse_context
from backend.http.predict_body import read_predict_body
from backend.http.service import TRAINING_OFF, Service
from backend.predict.errors import InvalidContext, ModelUnavailable
from backend.predict.holder import ModelHolder
from backend.predict.projects import ParamsError, parse_extra_params, project_key, project_run
from backend.predict.refusals import refusal_entry
from backend.predict.versions import base_version
from backend.settings import Settings

log = logging.getLogger("backend.http")

MODEL_STATES = {"UP": "ready", "LOADING": "loading", "ERROR": "failed"}
LOADING_VERSION = "loading"  # what /setup answers before the model (and so its version) is known


def health_body(holder: ModelHolder, settings: Settings) -> tuple[dict, bool]:
    """(the /health and /ready body, whether the model is ready)."""
    state = holder.state()
    body = {"status": "UP", "model": MODEL_STATES[state.status], "model_class": "NextChat",
            "model_ready": state.ready}
    if state.model_version:
        body["model_version"] = base_version(settings, state.model_version)
    if state.reason:
        body["reason"] = state.reason
    return body, state.ready


def setup_reply(body: dict, service: Service) -> dict:
    """/setup: the project's extra params validated and kept, its model version (versions.py)."""
    settings, holder = service.settings, service.holder
    state = holder.state()
    if state.status == "ERROR":
        raise ModelUnavailable(state.reason)
    key = project_key(body.get("project"))
    try:
        params = parse_extra_params(body.get("extra_params"), settings)
    except ParamsError as exc:
        log.warning("/setup of project %s refused: %s", key, exc)
        raise BadRequest(str(exc)) from None
    config = checked_config(body["schema"], settings) if body.get("schema") is not None else None
    service.projects.update(key, params=params)
    if not state.ready and not settings.model_version:
        return {"model_version": LOADING_VERSION, "model": "loading"}
    if config is None:
        return {"model_version": base_version(settings, state.model_version)}
    run = project_run(settings, params, config, state.model_version)
    service.projects.update(key, model_version=run.model_version)
    return {"model_version": run.model_version}


def predict_reply(service: Service) -> dict:
    settings = service.settings
    deadline = Deadline.after(settings.request_deadline_s)
    body = read_predict_body(settings)
    config = checked_config(body.label_config, settings)
    context = parse_context(body.params)
    try:
        model = service.holder.require()
        key = project_key(body.project)
        run = project_run(settings, service.projects.params(key), config, model.model_version)
        service.projects.update(key, model_version=run.model_version)
        with service.admission.slot(deadline):
            results = service.predictor.predict(body.tasks, config, context, deadline, run)
    except (InvalidContext, ModelUnavailable, Overloaded) as exc:
        if context is None:
            raise  # the HTTP status, for callers that read it (backend.http.errors)
        return {"results": [interactive_refusal(exc, config, context, service)]}
    reason = f"left out: the request exceeded {body.left_out_reason}; retrieve predictions again for this task"
    results += [{"model_version": run.model_version, "score": 0.0, "error": reason}] * body.left_out
    service.counters.count(predict_requests=1, tasks=len(body.tasks), tasks_left_out=body.left_out)
    return {"results": results}


def interactive_refusal(exc: Exception, config, context: dict, service: Service) -> dict:
    """A refused interactive call answered with 200 and its reason where the annotator looks
    (backend.predict.refusals); busy and loading say when to try again."""
    reason = exc.reason if isinstance(exc, Overloaded) else str(exc)
    retry_after_s = exc.retry_after_s if isinstance(exc, Overloaded) else None
    if isinstance(exc, ModelUnavailable):
        retry_after_s = service.settings.retry_after_s
    if retry_after_s is not None:
        reason = f"{reason}; try again in {retry_after_s} s"
    log.warning("interactive call refused: %s", reason)
    service.counters.count(interactive_refusals=1)
    return refusal_entry(config, context, reason, service.holder.state().model_version)


def webhook_reply(body: dict, service: Service) -> dict:
    action = body.get("action")
    if action in LIVE_EVENTS:
        if service.exporter is None:
            return {"status": "ignored", "reason": "STAGE3_DIR is not set"}
        service.exporter.submit(body)
        service.counters.count(webhooks_queued=1)
        return {"status": "queued", "action": action}
    if action == "START_TRAINING":
        if service.training is None:
            return {"status": "ignored", "reason": TRAINING_OFF}
        project = body.get("project") if isinstance(body.get("project"), dict) else {}
        service.counters.count(train_webhooks=1)
        return service.training.request(project.get("id"))
    return {"status": "Unknown event"}
