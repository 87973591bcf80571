"""Toy-world scenes -> NExT-Chat training conversations (token ids, what is predicted, the boxes).

Four tasks, in the release's prompt templates (model/prompts.py) and answer forms:
- REC, one object:   ``Where is the red car in the image?``  -> ``Answer: <at> <boxes> .``
- REC, a category:   ``Where is dog in the image?`` (or ``a dog``) -> ``Answer: <at> <boxes> <at> <boxes> .`` (one
                     ``<at> <boxes>`` per instance, left to right) or ``Answer: none .`` when there is none;
                     this is what pre-annotation from a config's labels asks;
- REG:               ``Please describe <at> <boxes>.`` (the object's box as input) -> ``a small brown dog .``
- grounded caption:  ``Can you describe the image and include object locations?`` ->
                     ``a red car <at> <boxes> and a dog <at> <boxes> on the road .``

A conversation has one to ``max_turns`` turns about one image; the first turn is exactly the single-turn
prompt the model answers at inference, later ones follow as `` USER: ... ASSISTANT: ...</s>``.
Predicted tokens are the answers and their ``</s>``, except ``<boxes>`` (its input embedding is
``loc_encoder`` of the box, so it is never predicted, as in the release). Boxes are normalised xyxy in
the padded square (model/processing.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from .. import prompts
from ..tokenizer import NextChatTokenizer
from ..toy_world import CATEGORIES, Scene, caption_text

LOCATION = prompts.BOX_PLACEHOLDER
TASKS = ("rec_object", "rec_category", "reg", "caption")
TASK_WEIGHTS = (0.35, 0.25, 0.25, 0.15)
# a category question asks for one of the scene's categories this often, else for any category (so that
# "none" is a common answer: pre-annotation asks every label of a config, most of them absent)
PRESENT_CATEGORY_SHARE = 0.3


@dataclass
class Conversation:
    ids: list[int] = field(default_factory=list)
    predicted: list[bool] = field(default_factory=list)      # ids[i] is a target of the LM loss
    box_is_answer: list[bool] = field(default_factory=list)  # the box follows an <at> the model emits
    box_objects: list[int] = field(default_factory=list)     # the scene object each box is

    def add(self, ids: list[int], predicted: bool, boxes: list[int] = (), answer: bool = False) -> None:
        self.ids += ids
        self.predicted += [predicted] * len(ids)
        self.box_objects += list(boxes)
        self.box_is_answer += [answer] * len(boxes)


@dataclass(frozen=True)
class Exchange:
    """One question and its answer: markup parts of the question, the answer's markup, and the scene
    objects whose boxes fill the question's and the answer's ``<boxes>``, in order."""

    question: prompts.UserTurn
    answer: str
    question_objects: list[int]
    answer_objects: list[int]


def exchange(scene: Scene, task: str, rng: random.Random) -> Exchange:
    if task == "rec_object" and scene.objects:
        index = rng.randrange(len(scene.objects))
        expression = rng.choice(scene.objects[index].expressions)
        return Exchange(prompts.referring(expression), f"Answer: {LOCATION} .", [], [index])
    if task == "reg" and scene.objects:
        index = rng.randrange(len(scene.objects))
        return Exchange(prompts.region_description(), f"{scene.objects[index].description} .", [index], [])
    if task == "caption" and scene.objects:
        order = sorted(range(len(scene.objects)), key=lambda i: caption_position(scene.caption, i))
        return Exchange(prompts.grounded_caption(), caption_text(scene, LOCATION), [], order)
    return category_exchange(scene, rng)


def caption_position(caption: str, index: int) -> int:
    position = caption.find(f"{{{index}}}")
    return position if position >= 0 else len(caption)


def category_exchange(scene: Scene, rng: random.Random) -> Exchange:
    present = sorted({o.category for o in scene.objects})
    category = rng.choice(present) if present and rng.random() < PRESENT_CATEGORY_SHARE else rng.choice(CATEGORIES)
    found = sorted((i for i, o in enumerate(scene.objects) if o.category == category),
                   key=lambda i: scene.objects[i].box[0])
    answer = "Answer: " + (" ".join([LOCATION] * len(found)) if found else "none") + " ."
    asked = category if rng.random() < 0.7 else f"a {category}"   # a label's value, or a prompt="a dog"
    return Exchange(prompts.referring(asked), answer, [], found)


def build_conversation(scene: Scene, tokenizer: NextChatTokenizer, num_image_tokens: int, rng: random.Random,
                       max_turns: int = 3) -> Conversation:
    conversation = Conversation()
    for turn in range(rng.randint(1, max_turns)):
        item = exchange(scene, rng.choices(TASKS, TASK_WEIGHTS)[0], rng)
        if turn == 0:
            question = tokenizer.encode(prompts.render(item.question, num_image_tokens))
        else:
            parts = [(" USER: ", True), *item.question.parts, (" ASSISTANT:", True)]
            question = tokenizer.encode(parts, add_bos=False)
        conversation.add(question, False, item.question_objects)
        answer = tokenizer.encode([(item.answer, True)], add_bos=False) + [tokenizer.ids.eos]
        conversation.add(answer, True, item.answer_objects, answer=True)
    return conversation


@dataclass
class ConversationBatch:
    ids: torch.Tensor            # [B, T] right-padded
    attention: torch.Tensor      # [B, T] 1 on real tokens
    predicted: torch.Tensor      # [B, T] bool: ids[:, t] is an answer token
    targets: torch.Tensor        # [B, T] next-token targets, -100 where none: targets[:, t] = ids[:, t+1]
    box_rows: torch.Tensor       # [n] the conversation of each <boxes> id, row-major over the batch
    box_objects: torch.Tensor    # [n] the object (index in its scene) of each <boxes> id
    box_is_answer: torch.Tensor  # [n] bool


def collate(conversations: list[Conversation], boxes_id: int, pad_id: int) -> ConversationBatch:
    width = max(len(c.ids) for c in conversations)
    ids = torch.full((len(conversations), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(conversations), width), dtype=torch.long)
    predicted = torch.zeros((len(conversations), width), dtype=torch.bool)
    targets = torch.full((len(conversations), width), -100, dtype=torch.long)
    for row, c in enumerate(conversations):
        n = len(c.ids)
        ids[row, :n] = torch.tensor(c.ids)
        attention[row, :n] = 1
        predicted[row, :n] = torch.tensor(c.predicted)
        following = ids[row, 1:n]
        wanted = predicted[row, 1:n] & (following != boxes_id)
        targets[row, :n - 1] = torch.where(wanted, following, torch.full_like(following, -100))
    rows = [row for row, c in enumerate(conversations) for _ in c.box_objects]
    return ConversationBatch(ids, attention, predicted, targets, torch.tensor(rows, dtype=torch.long),
                             torch.tensor([o for c in conversations for o in c.box_objects], dtype=torch.long),
                             torch.tensor([a for c in conversations for a in c.box_is_answer], dtype=torch.bool))
