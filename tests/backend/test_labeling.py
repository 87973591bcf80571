"""backend/studio/labeling.py: what the backend reads from a labeling config, and what it skips."""

from __future__ import annotations

import logging

import pytest

from backend.studio.labeling import (
    Label,
    LabelConfigError,
    RegionControl,
    TextAreaControl,
    parse_label_config,
)

REFERENCE_CONFIG = """<View>
  <Header value="Text prompt (auto-annotation):"/>
  <TextArea name="prompt" toName="image" editable="true" rows="2" maxSubmissions="1" showSubmitButton="true"/>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="label" toName="image"><Label value="cat" background="red"/>
    <Label value="dog" background="blue"/></RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="cat" background="orange"/>
    <Label value="dog" background="purple"/></PolygonLabels>
  <BrushLabels name="brush" toName="image"><Label value="cat" background="green"/>
    <Label value="dog" background="yellow"/></BrushLabels>
  <TextArea name="desc" toName="image" perRegion="true" editable="true" rows="2" placeholder="Region description"/>
</View>"""


def test_reference_config_from_a_real_label_studio():
    config = parse_label_config(REFERENCE_CONFIG)
    assert config.skipped == ()
    (target,) = config.targets
    assert (target.name, target.value_key) == ("image", "image")
    assert [(c.name, c.kind) for c in target.region_controls] == [
        ("label", "rectanglelabels"), ("poly", "polygonlabels"), ("brush", "brushlabels")]
    assert all(tuple(label.value for label in c.labels) == ("cat", "dog") and c.to_name == "image"
               for c in target.region_controls)
    assert target.prompt_areas == (TextAreaControl("prompt", "image", "prompt", False, None),)
    assert target.region_areas == (TextAreaControl("desc", "image", "description", True, None),)
    assert target.caption_areas == target.answer_areas == target.question_areas == ()
    assert config.control("poly").kind == "polygonlabels"
    assert config.control("desc").role == "description"
    assert config.control("nope") is None


def test_label_prompt_synonyms_and_catch_all():
    config = parse_label_config("""<View><Image name="img" value="$photo"/>
      <RectangleLabels name="box" toName="img">
        <Label value="person" prompt="a person standing" predicted_values="man, woman ,kid"
               synonyms="kid,child"/>
        <Label value="Traffic Light (red)"/>
        <Label value="other" catch_all="true"/>
      </RectangleLabels></View>""")
    control = config.target("img").region_controls[0]
    person, light, other = control.labels
    assert person == Label("person", "a person standing", ("man", "woman", "kid", "child"), False)
    assert person.referring_expression == "a person standing"
    assert light.referring_expression == "Traffic Light (red)"
    assert control.label("Traffic Light (red)") is light
    assert control.label("traffic light (red)") is None
    assert other.catch_all and control.catch_all is other
    assert control.prompt_labels == (person, light)
    assert config.target("img").value_key == "photo"


def test_textarea_roles_from_attribute_and_name():
    config = parse_label_config("""<View><Image name="image" value="$image"/>
      <TextArea name="t1" toName="image" role="caption"/>
      <TextArea name="t2" toName="image" role="Answer"/>
      <TextArea name="t3" toName="image" role="question"/>
      <TextArea name="t4" toName="image" role="prompt" value="$expression"/>
      <TextArea name="image_caption" toName="image"/>
      <TextArea name="model_answer" toName="image"/>
      <TextArea name="user_question" toName="image"/>
      <TextArea name="anything" toName="image"/>
      <TextArea name="notes" toName="image" perRegion="true" role="caption"/>
      <RectangleLabels name="box" toName="image"><Label value="a"/></RectangleLabels>
    </View>""")
    target = config.targets[0]
    assert [a.name for a in target.caption_areas] == ["t1", "image_caption"]
    assert [a.name for a in target.answer_areas] == ["t2", "model_answer"]
    assert [a.name for a in target.question_areas] == ["t3", "user_question"]
    assert [a.name for a in target.prompt_areas] == ["t4", "anything"]
    assert [a.name for a in target.region_areas] == ["notes"]
    assert target.prompt_areas[0].data_key == "expression"
    assert target.prompt_areas[1].data_key == "anything"


def test_attribute_names_are_case_insensitive():
    config = parse_label_config("""<View><Image name="image" value="$image"/>
      <textarea name="d" toname="image" perregion="TRUE"/>
      <rectanglelabels name="b" toname="image" Smart="false"><label value="x"/></rectanglelabels>
    </View>""")
    target = config.targets[0]
    assert target.region_areas[0].name == "d"
    assert target.region_controls[0].smart is False


def test_smart_defaults_to_true():
    control = parse_label_config(REFERENCE_CONFIG).targets[0].region_controls[0]
    assert isinstance(control, RegionControl) and control.smart


def test_several_images_and_multi_to_name():
    config = parse_label_config("""<View>
      <Image name="left" value="$a"/><Image name="right" value="$b"/>
      <RectangleLabels name="both" toName="left,right"><Label value="x"/></RectangleLabels>
      <PolygonLabels name="only_right" toName="right"><Label value="y"/></PolygonLabels>
      <TextArea name="p" toName="left"/>
    </View>""")
    left, right = config.targets
    assert [c.name for c in left.region_controls] == ["both"]
    assert [(c.name, c.to_name) for c in right.region_controls] == [
        ("both", "right"), ("only_right", "right")]
    assert [a.name for a in left.prompt_areas] == ["p"] and right.prompt_areas == ()


def test_unservable_parts_are_skipped_with_reasons(caplog):
    xml = """<View>
      <Image name="image" value="$image"/>
      <KeyPointLabels name="kp" toName="image"><Label value="eye"/></KeyPointLabels>
      <Choices name="cls" toName="image" choice="several"><Choice value="indoor"/></Choices>
      <Video name="video" value="$video"/>
      <RectangleLabels name="vbox" toName="video"><Label value="x"/></RectangleLabels>
      <RectangleLabels name="ghost" toName="missing"><Label value="x"/></RectangleLabels>
      <RectangleLabels name="dynamic" toName="image" value="labels"/>
      <PolygonLabels name="empty" toName="image"/>
      <TextArea name="weird" toName="image" role="summary"/>
      <TextArea name="desc" toName="image" role="description"/>
      <FancyWidget name="fw" toName="image"/>
      <Image name="static" value="https://example.com/a.png"/>
      <Image name="lonely" value="$other"/>
      <BrushLabels name="brush" toName="image"><Label value="x"/></BrushLabels>
    </View>"""
    with caplog.at_level(logging.WARNING, logger="backend.studio.labeling"):
        config = parse_label_config(xml)
    reasons = {item.name: item.reason for item in config.skipped}
    assert set(reasons) == {"kp", "cls", "video", "vbox", "ghost", "dynamic", "empty", "weird",
                            "desc", "fw", "static", "lonely"}
    assert "not a control" in reasons["kp"] and "images only" in reasons["video"]
    assert "no served Image" in reasons["ghost"] and "no served Image" in reasons["vbox"]
    assert "task data variable" in reasons["dynamic"] and "no Label" in reasons["empty"]
    assert "choice='several'" in reasons["cls"]
    assert "unknown role" in reasons["weird"] and "perRegion" in reasons["desc"]
    assert "unknown tag" in reasons["fw"] and "$image" in reasons["static"]
    assert "no control" in reasons["lonely"]
    assert [t.name for t in config.targets] == ["image"]
    assert [c.name for c in config.targets[0].region_controls] == ["brush"]
    assert sum("skipping" in r.message for r in caplog.records) == len(config.skipped)


@pytest.mark.parametrize(("xml", "reason"), [
    ("", "empty"),
    ("<View><Image name='i' value='$i'></View>", "not valid XML"),
    ("not xml at all", "not valid XML"),
    ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x "boom">]><View>&x;</View>', "DTD"),
    ('<!doctype View SYSTEM "file:///etc/passwd"><View/>', "DTD"),
])
def test_unreadable_config_raises_one_line_error(xml, reason):
    with pytest.raises(LabelConfigError) as error:
        parse_label_config(xml)
    assert reason in str(error.value)
    assert "\n" not in str(error.value)


def test_parse_is_cached_per_text():
    assert parse_label_config(REFERENCE_CONFIG) is parse_label_config(REFERENCE_CONFIG)


def test_config_with_nothing_to_serve_is_not_an_error():
    config = parse_label_config('<View><Text name="t" value="$text"/></View>')
    assert config.targets == ()
    assert [s.tag for s in config.skipped] == ["Text"]
