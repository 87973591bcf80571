"""The model contract (backend/predict/contract.py): the real model and the test double both implement
it, so the backend's tests exercise the calls the real model answers."""

from __future__ import annotations

import inspect

import pytest

from backend.predict.contract import NextChatModel
from model import NextChat
from tests.backend.fakes import FakeNextChat

PROTOCOL_METHODS = [name for name, value in vars(NextChatModel).items()
                    if callable(value) and not name.startswith("_")]


def test_protocol_lists_every_backend_call():
    assert set(PROTOCOL_METHODS) == {"ground", "ground_many", "describe", "segment", "refine", "caption", "ask",
                                     "stop_when"}


@pytest.mark.parametrize("implementation", [NextChat, FakeNextChat], ids=["NextChat", "FakeNextChat"])
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_implementation_accepts_the_protocol_signature(implementation, method):
    wanted = inspect.signature(getattr(NextChatModel, method))
    given = inspect.signature(getattr(implementation, method))
    wanted_params = [p for p in wanted.parameters.values() if p.name != "self"]
    given_params = [p for p in given.parameters.values() if p.name != "self"]
    for position, param in enumerate(wanted_params):
        assert position < len(given_params), f"{implementation.__name__}.{method} lacks {param.name!r}"
        assert given_params[position].name == param.name, (
            f"{implementation.__name__}.{method}: parameter {position} is {given_params[position].name!r}, "
            f"the contract says {param.name!r}")
        if param.default is not inspect.Parameter.empty:
            assert given_params[position].default is not inspect.Parameter.empty
    extra_required = [p.name for p in given_params[len(wanted_params):] if p.default is inspect.Parameter.empty
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not extra_required, f"{implementation.__name__}.{method} requires more than the contract: {extra_required}"


def test_both_have_a_model_version():
    assert isinstance(FakeNextChat(), NextChatModel)
    assert isinstance(inspect.getattr_static(NextChat, "model_version"), property)
