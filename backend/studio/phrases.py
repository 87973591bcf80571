"""Where phrases and labels meet: the one place that maps model text to config labels.

Every workflow (pre-annotation from labels, typed prompts, grounded captions, region Q&A)
turns a phrase into a ``<Label value>`` of one region control with :class:`PhraseMatcher`.
The stages, first hit wins:

1. ``exact``     same text after normalising: Unicode NFKC, case-folded, whitespace
                 collapsed, a leading article ("a", "an", "the") and trailing punctuation
                 dropped. Other characters count, so "C++" and "person (adult)" match as-is.
2. ``plural``    same text once ``_``, ``-`` and ``/`` read as spaces and the last word is
                 singular ("Traffic-Lights" -> "traffic light", "people" -> "person"), by
                 the simple English rules of :func:`singular_candidates` (no NLP model).
3. ``synonym``   stages 1-2 against the label's synonyms from the config
                 (``predicted_values="kitten,kitty"`` or ``synonyms=...``).
4. ``contains``  the phrase contains a label or synonym as whole words, in any of the
                 forms above ("a black cat on the sofa" -> "cat"). The earliest mention wins,
                 then the longest. Switch off with ``contains=False``.
5. ``similar``   difflib ratio >= ``min_similarity`` between the phrase (or a window of as
                 many words as the label) and a label or synonym, both >= 3 characters.
                 Switch off with ``similarity=False``.
6. ``catch-all`` the control's ``catch_all="true"`` label.
7. no label: ``match`` returns None; the caller drops the region or keeps it unlabeled.

Who calls it: every workflow gets its labels from :func:`labels_for_region`, which adds the
annotator's own choice and the fallback a workflow needs on top of :class:`PhraseMatcher`
(``backend.predict`` have no matching of their own):

* grounded caption / region Q&A: each located phrase (``Region.phrase``), no fallback. A
  control where the phrase matches no label and that has no catch-all gets no shape for it;
  the phrase stays in the caption / answer text and the predictor logs it;
* typed or stored referring expression: the label named as ``"label: expression"``
  (:func:`split_label_prefix`) or selected in the UI, else the expression's match, else the
  control's first label (the annotator asked for this region, so it is always drawn);
* box drawn with the smart tool: its label where a control has it, else that label's text
  matched to the control's labels, else the control's first label;
* pre-annotation from labels needs no matching: each label is its own prompt;
* Choices (backend.predict.choices): a single-choice answer is matched to the choices (each ``<Choice>``
  is a Label here); a yes/no answer of a multiple-choice question to :data:`YES` / :data:`NO`
  (:func:`yes_or_no`).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from backend.studio.labeling import Label, RegionControl

__all__ = [
    "LabelMatch",
    "PhraseMatcher",
    "labels_for_phrase",
    "labels_for_region",
    "match_phrase",
    "normalise",
    "singular_candidates",
    "split_label_prefix",
    "yes_or_no",
]

_ARTICLES = ("a ", "an ", "the ")
_TRAILING = " \t\n.,;:!?\"'"
_MIN_SIMILAR_CHARS = 3  # "an" must not look like "man"
_IRREGULAR = {
    "people": "person", "persons": "person", "children": "child", "mice": "mouse",
    "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "lice": "louse",
    "dice": "die", "cacti": "cactus", "fungi": "fungus", "criteria": "criterion",
}


@dataclass(frozen=True)
class LabelMatch:
    """The label a phrase maps to, how (stage name above) and how sure (1.0 except similar)."""

    label: Label
    how: str
    score: float
    matched: str  # the label value or synonym that matched


def normalise(text: str) -> str:
    """Stage-1 form: NFKC, case-folded, single spaces, no leading article/trailing punctuation."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    folded = folded.strip(_TRAILING)
    for article in _ARTICLES:
        if folded.startswith(article):
            folded = folded[len(article):].lstrip()
            break
    return folded


def _loose(text: str) -> str:
    return " ".join(re.sub(r"[_\-/]+", " ", normalise(text)).split())


def singular_candidates(word: str) -> set[str]:
    """Possible singulars of an English word by simple rules (irregulars, -ies, -ves, -es,
    -s, -men). Several candidates may come back ("movies" -> movy, movie); matching only
    needs one to equal a label's form, so a wrong extra candidate is harmless."""
    if word in _IRREGULAR:
        return {_IRREGULAR[word]}
    found = set()
    if word.endswith("men") and len(word) > 3:
        found.add(word[:-3] + "man")  # men, women, firemen
    if word.endswith("ies") and len(word) > 4:
        found |= {word[:-3] + "y", word[:-1]}  # puppies, movies
    elif word.endswith("ves") and len(word) > 4:
        found |= {word[:-3] + "f", word[:-3] + "fe", word[:-1]}  # leaves, knives, olives
    elif word.endswith("es") and len(word) > 3:
        found |= {word[:-2], word[:-1]}  # buses, boxes, benches; shoes, houses
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2:
        found.add(word[:-1])  # cats
    return found


@lru_cache(maxsize=4096)
def _forms(text: str) -> frozenset[str]:
    """Stage-2 forms: the loose text, and the same with its last word made singular."""
    loose = _loose(text)
    forms = {loose}
    if loose:
        *head, last = loose.split(" ")
        forms |= {" ".join([*head, singular]) for singular in singular_candidates(last)}
    return frozenset(forms)


def _word_windows(words: Sequence[str], size: int) -> Iterable[tuple[int, str]]:
    for start in range(len(words) - size + 1):
        yield start, " ".join(words[start:start + size])


class PhraseMatcher:
    """Match phrases to the labels of one region control (see module doc for the stages)."""

    def __init__(self, labels: Sequence[Label], *, contains: bool = True,
                 similarity: bool = True, min_similarity: float = 0.8) -> None:
        if not 0.0 < min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in (0, 1], got {min_similarity}")
        self.labels = tuple(labels)
        self.contains = contains
        self.similarity = similarity
        self.min_similarity = min_similarity
        ordinary = [label for label in self.labels if not label.catch_all]
        self._names = [(label, label.value) for label in ordinary]
        self._synonyms = [(label, synonym) for label in ordinary for synonym in label.synonyms]
        self._catch_all = next((label for label in self.labels if label.catch_all), None)

    def match(self, phrase: str | None) -> LabelMatch | None:
        """The label for ``phrase``; the catch-all label or None when nothing matches."""
        if phrase and normalise(phrase):
            found = (self._exact(phrase, self._names, "exact")
                     or self._plural(phrase, self._names, "plural")
                     or self._exact(phrase, self._synonyms, "synonym")
                     or self._plural(phrase, self._synonyms, "synonym"))
            if found is None and self.contains:
                found = self._contained(phrase)
            if found is None and self.similarity:
                found = self._similar(phrase)
            if found is not None:
                return found
        if self._catch_all is not None:
            return LabelMatch(self._catch_all, "catch-all", 0.0, self._catch_all.value)
        return None

    @staticmethod
    def _exact(phrase, candidates, how) -> LabelMatch | None:
        key = normalise(phrase)
        for label, text in candidates:
            if normalise(text) == key:
                return LabelMatch(label, how, 1.0, text)
        return None

    @staticmethod
    def _plural(phrase, candidates, how) -> LabelMatch | None:
        forms = _forms(phrase)
        for label, text in candidates:
            if forms & _forms(text):
                return LabelMatch(label, how, 1.0, text)
        return None

    def _contained(self, phrase: str) -> LabelMatch | None:
        words = _loose(phrase).split(" ")
        best: tuple[int, int, LabelMatch] | None = None
        for label, text in self._names + self._synonyms:
            size = len(_loose(text).split(" "))
            for start, window in _word_windows(words, size):
                if _forms(window) & _forms(text):
                    rank = (start, -size)
                    if best is None or rank < best[:2]:
                        best = (start, -size, LabelMatch(label, "contains", 1.0, text))
                    break
        return best[2] if best else None

    def _similar(self, phrase: str) -> LabelMatch | None:
        words = _loose(phrase).split(" ")
        best: LabelMatch | None = None
        for label, text in self._names + self._synonyms:
            target = _loose(text)
            size = len(target.split(" "))
            pieces = [_loose(phrase)] + [window for _, window in _word_windows(words, size)]
            pieces = [piece for piece in pieces if len(piece) >= _MIN_SIMILAR_CHARS]
            if len(target) < _MIN_SIMILAR_CHARS or not pieces:
                continue
            ratio = max(difflib.SequenceMatcher(None, piece, target).ratio() for piece in pieces)
            if ratio >= self.min_similarity and (best is None or ratio > best.score):
                best = LabelMatch(label, "similar", round(ratio, 4), text)
        return best


def match_phrase(phrase: str | None, labels: Sequence[Label], **options) -> LabelMatch | None:
    """One-off :meth:`PhraseMatcher.match` (options as in PhraseMatcher)."""
    return PhraseMatcher(labels, **options).match(phrase)


def split_label_prefix(text: str, labels: Sequence[Label]) -> tuple[Label | None, str]:
    """Read a typed prompt of the form ``"<label>: <expression>"``.

    Returns (the Label named before the first colon, the expression) when the prefix is a
    label value (stage-1 equal), else (None, the whole text stripped). Lets an annotator pick
    the label of a typed prompt's regions: ``"dog: the small dog on the left"``.
    """
    head, sep, rest = text.partition(":")
    if sep and rest.strip():
        key = normalise(head)
        for label in labels:
            if normalise(label.value) == key:
                return label, rest.strip()
    return None, text.strip()


def labels_for_phrase(controls: Iterable[RegionControl], phrase: str | None,
                      **options) -> dict[str, LabelMatch]:
    """For each region control, the LabelMatch of ``phrase`` (controls with none left out).

    ``{name: match.label.value for name, match in ...items()}`` is the ``labels`` argument
    of :func:`backend.studio.results.region_results`.
    """
    matches = {}
    for control in controls:
        found = PhraseMatcher(control.labels, **{**control.match_options, **options}).match(phrase)
        if found is not None:
            matches[control.name] = found
    return matches


def labels_for_region(controls: Iterable[RegionControl], phrase: str | None, *, chosen: str | None = None,
                      fallback_first: bool = False, **options) -> dict[str, str]:
    """Control name -> label value for one region that ``phrase`` names (module doc: who calls it).

    Per control, first hit wins: ``chosen`` when the control has a label of exactly that value
    (a label the annotator picked); the :class:`PhraseMatcher` match of ``phrase`` (its
    catch-all included); with ``fallback_first``, the control's first label that is not a
    catch-all. A control with none of these is left out: the region is not drawn on it.
    ``options`` go to PhraseMatcher over the control's own ``match_options`` (its ``matchContains``,
    ``matchSimilarity``, ``minSimilarity`` attributes; ``similarity=False`` switches that stage off).
    """
    values: dict[str, str] = {}
    for control in controls:
        if chosen is not None and control.label(chosen) is not None:
            values[control.name] = chosen
            continue
        found = PhraseMatcher(control.labels, **{**control.match_options, **options}).match(phrase)
        if found is not None:
            values[control.name] = found.label.value
        elif fallback_first and control.labels:
            values[control.name] = (control.prompt_labels or control.labels)[0].value
    return values


# answers to yes/no questions; "contains" finds them in a longer answer ("No, it is not."), the earliest wins
YES = Label("yes", synonyms=("yeah", "yep", "yup", "true", "correct", "right", "sure", "definitely", "affirmative"))
NO = Label("no", synonyms=("nope", "not", "none", "false", "incorrect", "never", "neither", "nothing", "isn't",
                          "aren't", "doesn't", "don't", "can't", "cannot"))


def yes_or_no(answer: str | None) -> LabelMatch | None:
    """The :data:`YES` or :data:`NO` match of an answer (None when it says neither)."""
    return PhraseMatcher((YES, NO), similarity=False).match(answer)
