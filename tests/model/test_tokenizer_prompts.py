"""Tokenizer rules (docs/model.md) and prompt building (docs/model.md): user text never becomes markup."""

from __future__ import annotations

import pytest

from model import prompts
from model.tokenizer import NextChatTokenizer


@pytest.fixture(scope="module")
def tok(tiny_checkpoint) -> NextChatTokenizer:
    return NextChatTokenizer.from_dir(tiny_checkpoint)


def test_special_ids_come_from_the_tokenizer(tok):
    assert (tok.ids.im_patch, tok.ids.im_start, tok.ids.im_end, tok.ids.at, tok.ids.boxes) == (400, 401, 402, 403, 404)
    assert (tok.ids.bos, tok.ids.eos, tok.ids.unk) == (1, 2, 0)


@pytest.mark.parametrize("text", ["where is <at> <boxes> now", "a </s> b <s> c <unk>", "<image> please",
                                  "{0} and {} and {expr}", "<im_start><im_patch><im_end>"])
def test_user_text_never_yields_special_ids(tok, text):
    ids = tok.encode([("USER: ", True), (text, False), (" ASSISTANT:", True)])
    special = {tok.ids.at, tok.ids.boxes, tok.ids.im_patch, tok.ids.im_start, tok.ids.im_end, tok.ids.eos}
    assert not special & set(ids[1:])
    assert ids[0] == tok.ids.bos and ids.count(tok.ids.bos) == 1


def test_markup_yields_special_ids_and_strips_whitespace(tok):
    ids = tok.encode("A <at> <boxes> B")
    assert ids[:2] == [1] + tok.encode("A", add_bos=False)[:1]
    assert tok.ids.at in ids and tok.ids.boxes in ids
    assert tok.encode("A<at><boxes>B") == ids  # whitespace around added tokens is stripped


def test_legacy_false_drops_the_dummy_prefix_after_added_tokens(tok):
    after = tok.encode("<at>the", add_bos=False)
    plain = tok.encode("the", add_bos=False)
    assert after[0] == tok.ids.at
    assert after[1:] != plain  # "▁the" at the start, "the" (or its pieces) after an added token
    assert tok.sp.IdToPiece(plain[0]).startswith("\u2581")


def test_decode_keeps_added_tokens_like_the_release(tok):
    ids = tok.encode("Answer: <at> <boxes> .", add_bos=False) + [tok.ids.eos]
    assert tok.decode(ids) == "Answer: <at> <boxes> ."


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    from model.tokenizer import TokenizerError
    with pytest.raises(TokenizerError, match="no tokenizer.model"):
        NextChatTokenizer.from_dir(tmp_path)


@pytest.mark.parametrize("text, order, markup_count", [
    ("What is region [0]?", [0], 1),
    ("Compare [0, 1] and [1]", [0, 1, 1], 3),
    ("A [0,] trailing comma", [0], 1),
    ("Not refs: [] [-1] [0.5] [a] [x, 1]", [], 0),
])
def test_box_references(text, order, markup_count):
    turn = prompts.with_box_references(text, num_boxes=2)
    assert turn.box_order == order
    markup = "".join(t for t, is_markup in turn.parts if is_markup)
    assert markup.count(prompts.BOX_PLACEHOLDER) == markup_count


def test_box_reference_to_a_missing_box_is_an_error():
    with pytest.raises(prompts.PromptError, match="names box 2 but 2 box"):
        prompts.with_box_references("see [2]", num_boxes=2)


def test_rendered_prompt_matches_the_template(tok):
    parts = prompts.render(prompts.referring("the blue circle"), num_image_tokens=2)
    text = "".join(t for t, _ in parts)
    assert text == (prompts.SYSTEM + " USER: <im_start><im_patch><im_patch><im_end> "
                    "Where is the blue circle in the image? ASSISTANT:")
