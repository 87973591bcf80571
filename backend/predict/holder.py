"""The model's lifecycle in this process: loaded once (in the background for the server), its state
for /health, the GPU lock, and CUDA out-of-memory recognised and cleaned up after."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from backend.predict.contract import NextChatModel
from backend.predict.errors import ModelUnavailable
from backend.predict.gpu_lock import PriorityLock
from backend.settings import Settings
from model.reasons import one_line

log = logging.getLogger("backend.predict")


@dataclass(frozen=True)
class ModelState:
    status: str  # UP, LOADING, ERROR
    ready: bool
    model_version: str = ""
    reason: str = ""


class ModelHolder:
    """The one model of this process, given loaded (:meth:`loaded`) or loaded once by a background
    thread (``load=``). `lock` serialises GPU work; /health reads :meth:`state`, never the lock."""

    def __init__(self, model: NextChatModel | None = None, load: Callable[[], NextChatModel] | None = None):
        self.lock = PriorityLock()
        self._model = model
        self._load_fn = load
        self._error = "" if model is not None or load is not None else "no model configured"

    @classmethod
    def loaded(cls, model: NextChatModel) -> ModelHolder:
        return cls(model=model)

    def start_loading(self) -> None:
        if self._load_fn is not None:
            threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            model = self._load_fn()
        except Exception as exc:  # noqa: BLE001 - any load failure becomes a readiness reason
            log.exception("model failed to load")
            self._error = f"model failed to load: {type(exc).__name__}: {one_line(exc, 200)}"
        else:
            self._model = model
            log.info("model ready: %s", model.model_version)
        finally:
            self._load_fn = None

    def state(self) -> ModelState:
        model = self._model
        if model is not None:
            return ModelState("UP", True, model.model_version)
        if self._load_fn is not None:
            return ModelState("LOADING", False, reason="model is loading")
        return ModelState("ERROR", False, reason=self._error)

    def require(self) -> NextChatModel:
        model = self._model
        if model is None:
            raise ModelUnavailable(self.state().reason or "model is not ready")
        return model


def load_model(settings: Settings) -> NextChatModel:
    """NextChat from the operator's checkpoint and stage-3 delta (the only place weights are chosen); a delta
    that does not fit the checkpoint raises model.stage3.DeltaError (a ValueError) with one line."""
    from model import NextChat
    from model.devices import resolve_device, resolve_dtype

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    log.info("loading NExT-Chat from %s on %s as %s%s", settings.checkpoint, device, dtype,
             f" with the delta {settings.delta}" if settings.delta else "")
    return NextChat.from_pretrained(settings.checkpoint, vision_tower=settings.vision_tower or None,
                                    device=device, dtype=dtype, delta=settings.delta or None)


def is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def release_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
