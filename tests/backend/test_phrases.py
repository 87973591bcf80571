"""backend/studio/phrases.py: phrases from the model -> labels from the config."""

from __future__ import annotations

import pytest

from backend.studio.labeling import Label, parse_label_config
from backend.studio.phrases import (
    PhraseMatcher,
    labels_for_phrase,
    match_phrase,
    normalise,
    singular_candidates,
    split_label_prefix,
)

LABELS = (
    Label("person", synonyms=("man", "woman", "child")),
    Label("cat"),
    Label("Traffic Light"),
    Label("T-shirt"),
    Label("C++"),
    Label("bus"),
    Label("fire_hydrant"),
    Label("dog", synonyms=("puppy", "hound")),
    Label("person (adult)"),
    Label("other", catch_all=True),
)


def matched(phrase, **options):
    found = PhraseMatcher(LABELS, **options).match(phrase)
    return None if found is None else (found.label.value, found.how)


@pytest.mark.parametrize(("phrase", "expected"), [
    ("cat", ("cat", "exact")),
    ("  CAT ", ("cat", "exact")),
    ("The cat.", ("cat", "exact")),
    ("traffic   light", ("Traffic Light", "exact")),
    ("c++", ("C++", "exact")),
    ("Person (Adult)", ("person (adult)", "exact")),
])
def test_exact_ignores_case_spaces_articles_and_trailing_punctuation(phrase, expected):
    assert matched(phrase) == expected


@pytest.mark.parametrize(("phrase", "expected"), [
    ("cats", ("cat", "plural")),
    ("Traffic-Lights", ("Traffic Light", "plural")),
    ("t shirts", ("T-shirt", "plural")),
    ("buses", ("bus", "plural")),
    ("people", ("person", "plural")),
    ("fire hydrants", ("fire_hydrant", "plural")),
])
def test_plurals_and_separators(phrase, expected):
    assert matched(phrase) == expected


@pytest.mark.parametrize(("phrase", "expected"), [
    ("man", ("person", "synonym")),
    ("Women", ("person", "synonym")),
    ("children", ("person", "synonym")),
    ("puppies", ("dog", "synonym")),
])
def test_synonyms_from_the_config(phrase, expected):
    assert matched(phrase) == expected


def test_contains_prefers_the_earliest_mention():
    assert matched("a man walking a dog") == ("person", "contains")
    assert matched("a dog next to a man") == ("dog", "contains")
    assert matched("two black cats on a sofa") == ("cat", "contains")
    assert matched("the red traffic lights ahead") == ("Traffic Light", "contains")


def test_contains_prefers_the_longest_label_at_the_same_place():
    labels = (Label("light"), Label("traffic light"))
    found = match_phrase("traffic light on the corner", labels, similarity=False)
    assert found.label.value == "traffic light"


def test_similarity_fallback_and_switch():
    assert matched("persn") == ("person", "similar")
    assert 0.8 <= PhraseMatcher(LABELS).match("persn").score < 1
    assert matched("persn", similarity=False) == ("other", "catch-all")
    assert matched("half an apple") == ("other", "catch-all"), "'an' must not look like 'man'"


def test_contains_switch():
    assert matched("a black cat", contains=False, similarity=False) == ("other", "catch-all")


def test_catch_all_then_none():
    assert matched("a tree") == ("other", "catch-all")
    assert matched("") == ("other", "catch-all")
    assert matched(None) == ("other", "catch-all")
    without_catch_all = [label for label in LABELS if not label.catch_all]
    assert match_phrase("a tree", without_catch_all) is None
    assert match_phrase("cat", without_catch_all).label.value == "cat"


def test_catch_all_label_is_never_matched_by_its_text():
    labels = (Label("cat"), Label("object", catch_all=True))
    found = match_phrase("object", labels, similarity=False)
    assert found.how == "catch-all"


def test_min_similarity_is_validated():
    with pytest.raises(ValueError, match="min_similarity"):
        PhraseMatcher(LABELS, min_similarity=0)


def test_normalise():
    assert normalise("  An  Apple!  ") == "apple"
    assert normalise("ＣＡＴ") == "cat"  # full-width letters: NFKC


def test_split_label_prefix():
    label, text = split_label_prefix("Dog: the small dog on the left", LABELS)
    assert label.value == "dog" and text == "the small dog on the left"
    assert split_label_prefix("traffic light: red one", LABELS)[0].value == "Traffic Light"
    assert split_label_prefix("time: 10:30", LABELS) == (None, "time: 10:30")
    assert split_label_prefix("dog:", LABELS) == (None, "dog:")
    assert split_label_prefix("  the dog ", LABELS) == (None, "the dog")


def test_labels_for_phrase_per_control():
    config = parse_label_config("""<View><Image name="image" value="$image"/>
      <RectangleLabels name="box" toName="image">
        <Label value="person" predicted_values="man"/><Label value="object" catch_all="true"/>
      </RectangleLabels>
      <PolygonLabels name="poly" toName="image"><Label value="dog"/></PolygonLabels>
    </View>""")
    controls = config.targets[0].region_controls
    matches = labels_for_phrase(controls, "a man in a hat")
    assert {name: m.label.value for name, m in matches.items()} == {"box": "person"}
    matches = labels_for_phrase(controls, "dogs")
    assert {name: m.label.value for name, m in matches.items()} == {"box": "object", "poly": "dog"}


@pytest.mark.parametrize(("plural", "singular"), [
    ("cats", "cat"), ("buses", "bus"), ("boxes", "box"), ("benches", "bench"),
    ("shoes", "shoe"), ("houses", "house"), ("puppies", "puppy"), ("movies", "movie"),
    ("knives", "knife"), ("leaves", "leaf"), ("olives", "olive"), ("women", "woman"),
    ("firemen", "fireman"), ("people", "person"), ("mice", "mouse"), ("teeth", "tooth"),
])
def test_singular_candidates(plural, singular):
    assert singular in singular_candidates(plural)


@pytest.mark.parametrize("word", ["glass", "bus", "tennis", "cat", "is", "sheep"])
def test_singular_words_get_no_candidates(word):
    assert singular_candidates(word) == set()
