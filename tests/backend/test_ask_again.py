"""Asking again (issue 11, point 4): a prompt or question TextArea without maxSubmissions keeps every
submission, and Label Studio sends them all in one result; the newest one is asked and only it is echoed, so
accepting the answer leaves that question above it. Drawing again: region_descriptions.xml pre-annotates
nothing (preannotate="false"), so no predicted region lies under a new drag."""

from __future__ import annotations

from backend.studio.results.textarea import MESSAGE_PREFIX
from tests.backend.fakes import (
    FakeNextChat,
    data_uri,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
    textarea_context,
)

IMAGE = data_uri(png_bytes(64, 48))


def ask(model, config, context, **settings):
    reply = make_app(model, **settings).test_client().post("/predict", json=predict_body([ls_task(1, IMAGE)], config,
                                                                                        context))
    assert reply.status_code == 200
    return reply.get_json()["results"][0]["result"]


def submissions(*texts, from_name):
    context = textarea_context(texts[0], from_name=from_name)
    context["result"][0]["value"]["text"] = list(texts)
    return context


def test_the_newest_question_is_asked_and_echoed_alone():
    model = FakeNextChat()
    results = ask(model, label_config("region_qa.xml"), submissions("what is this?", "who holds the dog?",
                                                                     from_name="question"))
    assert model.calls == [("ask", "who holds the dog?", ())]
    (echo,) = [item for item in results if item["from_name"] == "question"]
    assert echo["value"]["text"] == ["who holds the dog?"] and echo["id"] == "_w2iFDLtHy"
    assert [item["value"]["text"] for item in results if item["from_name"] == "answer"] == [
        ["answer to 'who holds the dog?': the dog"]]


def test_the_newest_prompt_is_grounded_and_a_message_line_is_no_submission():
    model = FakeNextChat()
    context = submissions("the cat", "the dog", MESSAGE_PREFIX + "server busy; try again in 5 s", from_name="prompt")
    results = ask(model, label_config("referring_prompt.xml"), context)
    assert model.calls == [("ground", "the dog")]
    assert [item["value"]["text"] for item in results if item["from_name"] == "prompt"] == [["the dog"]]


def test_a_refusal_keeps_the_newest_submission_above_the_message():
    results = ask(FakeNextChat(), label_config("referring_prompt.xml"), submissions("the cat", "x" * 30,
                                                                                     from_name="prompt"),
                  max_prompt_chars=20)
    (prompt,) = results
    assert prompt["value"]["text"] == ["x" * 30, MESSAGE_PREFIX + "prompt text longer than MAX_PROMPT_CHARS=20"]


def test_configs_allow_asking_again():
    for name, area in [("region_qa.xml", "question"), ("all_in_one.xml", "question"), ("all_in_one.xml", "prompt"),
                       ("referring_prompt.xml", "prompt"), ("click_to_mask.xml", "prompt")]:
        line = next(line for line in label_config(name).splitlines() if f'name="{area}"' in line)
        assert "maxSubmissions" not in line, (name, area)
