"""The toy model's training pieces: conversations, losses, a short training run, the checkpoint it writes."""

from __future__ import annotations

import random

import pytest
import torch

from model import prompts
from model.processing import ClipPreprocessConfig
from model.random_checkpoint import clip_preprocessor
from model.tokenizer import NextChatTokenizer
from model.toy_model.__main__ import scene_sentences
from model.toy_model.conversations import build_conversation, collate
from model.toy_model.data import build_cache
from model.toy_model.losses import box_loss, location_losses
from model.toy_model.recipe import TOY_SPEC, new_networks, save_checkpoint, write_tokenizer
from model.toy_model.train import JointRecipe, JointTrainer, jitter

SAM_SIZE = TOY_SPEC["sam"]["img_size"]
IMAGE_TOKENS = (TOY_SPEC["clip"]["image"] // TOY_SPEC["clip"]["patch"]) ** 2


@pytest.fixture(scope="module")
def cache():
    clip_config = ClipPreprocessConfig.from_dict(clip_preprocessor(TOY_SPEC))
    return build_cache(seed=5, count=12, clip_config=clip_config, sam_size=SAM_SIZE)


@pytest.fixture(scope="module")
def tokenizer_dir(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_tokenizer")
    write_tokenizer(out, [s for scene in cache.scenes for s in scene_sentences(scene)])
    return out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return NextChatTokenizer.from_dir(tokenizer_dir)


def test_tokenizer_keeps_the_system_sentence_whole(tokenizer):
    ids = tokenizer.encode(prompts.render(prompts.referring("the red car"), 2))
    assert ids[1] == tokenizer.sp.PieceToId("\u2581" + prompts.SYSTEM.replace(" ", "\u2581"))
    assert tokenizer.decode(ids).startswith(prompts.SYSTEM + " USER:")


def test_first_turn_is_the_inference_prompt(cache, tokenizer):
    from model.toy_world import CATEGORIES

    for seed in range(20):
        scene = cache.scenes[seed % len(cache)]
        conversation = build_conversation(scene, tokenizer, IMAGE_TOKENS, random.Random(seed))
        question = conversation.ids[:conversation.predicted.index(True)]
        asked = [f"{article}{c}" for c in CATEGORIES for article in ("", "a ")]   # category questions
        expressions = [e for o in scene.objects for e in o.expressions] + asked
        turns = [prompts.grounded_caption(), prompts.region_description(), *map(prompts.referring, expressions)]
        assert question in [tokenizer.encode(prompts.render(turn, IMAGE_TOKENS)) for turn in turns]


def test_boxes_follow_the_answers_and_are_never_predicted(cache, tokenizer):
    rng = random.Random(3)
    conversations = [build_conversation(s, tokenizer, IMAGE_TOKENS, rng) for s in cache.scenes]
    batch = collate(conversations, tokenizer.ids.boxes, tokenizer.ids.eos)
    assert int((batch.ids == tokenizer.ids.boxes).sum()) == len(batch.box_objects)
    assert not (batch.targets == tokenizer.ids.boxes).any()
    for row, conversation in enumerate(conversations):
        n = len(conversation.ids)
        assert batch.targets[row, : n - 1].tolist() == [
            token if wanted and token != tokenizer.ids.boxes else -100
            for token, wanted in zip(conversation.ids[1:], conversation.predicted[1:])]
        answer_at = [i for i, t in enumerate(conversation.ids) if t == tokenizer.ids.at and conversation.predicted[i]]
        assert len(answer_at) == sum(conversation.box_is_answer)
        assert all(conversation.ids[i + 1] == tokenizer.ids.boxes for i in answer_at)


def test_category_answers_name_every_instance(cache, tokenizer):
    from model.toy_model.conversations import category_exchange

    for scene in cache.scenes:
        item = category_exchange(scene, random.Random(scene.index))
        category = item.question.parts[1][0].removeprefix("a ")
        expected = [i for i, o in enumerate(scene.objects) if o.category == category]
        assert sorted(item.answer_objects) == expected
        assert item.answer.count("<at>") == len(expected)
        assert (item.answer == "Answer: none .") == (not expected)


def test_box_loss_is_zero_on_the_truth_and_grows_with_error():
    target = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8]])
    assert float(box_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    shifted = target + torch.tensor([0.05, 0.0, 0.05, 0.0])
    worse = target + torch.tensor([0.2, 0.0, 0.2, 0.0])
    assert 0 < float(box_loss(shifted, target)) < float(box_loss(worse, target))


def test_location_losses_match_their_definitions(tokenizer):
    model, _, _ = new_networks(len(tokenizer), seed=0)
    hidden = torch.randn(3, TOY_SPEC["hidden"])
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.5]] * 3)
    read = torch.tensor([[0.2, 0.2, 0.6, 0.7]])
    losses = location_losses(model, hidden, boxes, read, model.box_embeddings(read))
    predicted = model.loc_decoder(hidden)
    assert float(losses.box) == pytest.approx(float(box_loss(predicted, boxes)), rel=1e-6)
    assert float(losses.cycle_out) == pytest.approx(float(((model.loc_encoder(predicted) - hidden) ** 2).mean()),
                                                    rel=1e-6)
    assert float(losses.cycle_in) == pytest.approx(float((model.loc_decoder(model.loc_encoder(read)) - read)
                                                         .abs().mean()), rel=1e-6)


def test_jitter_keeps_boxes_well_formed_and_inside():
    boxes = torch.tensor([[0.0, 0.1, 0.2, 0.3], [0.8, 0.7, 1.0, 1.0]])
    moved = jitter(boxes, 0.5, random.Random(0))
    assert (moved[:, 2:] >= moved[:, :2]).all() and moved.min() >= 0 and moved.max() <= 1
    assert not torch.equal(moved, boxes)


def test_cache_prepared_by_worker_processes_is_the_same_cache(cache):
    clip_config = ClipPreprocessConfig.from_dict(clip_preprocessor(TOY_SPEC))
    parallel = build_cache(seed=5, count=len(cache), clip_config=clip_config, sam_size=SAM_SIZE, workers=2)
    assert parallel.scenes == cache.scenes
    assert all((a == b).all() for a, b in zip(parallel.images, cache.images, strict=True))
    assert all((a == b).all() for a, b in zip(parallel.packed_masks, cache.packed_masks, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(parallel.boxes, cache.boxes, strict=True))
    for name in ("clip_pixels", "patch_categories", "patch_colours", "patch_boxes"):
        assert torch.equal(getattr(parallel, name), getattr(cache, name)), name


def test_cache_masks_sit_in_sams_frame(cache):
    scene_index = next(i for i, s in enumerate(cache.scenes) if s.objects)
    masks, boxes = cache.masks(scene_index), cache.boxes[scene_index]
    assert masks.shape[1:] == (SAM_SIZE, SAM_SIZE)
    for mask, box in zip(masks, boxes):
        ys, xs = mask.nonzero(as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / SAM_SIZE
        assert torch.allclose(found, box, atol=3 / SAM_SIZE)
        assert not (mask.bool() & ~cache.valid(scene_index)).any()


def test_cache_keeps_the_image_and_gives_sams_pixels_as_inference_computes_them(cache):
    from model.processing import sam_pixel_values
    from model.toy_world import make_scene

    scene = cache.scenes[3]
    image = make_scene(scene.seed, scene.index, long_side=max(scene.width, scene.height)).image
    assert torch.equal(cache.sam_pixels([3])[0], sam_pixel_values(image, SAM_SIZE))
    assert cache.masks(3).shape == (len(scene.objects), SAM_SIZE, SAM_SIZE) and cache.masks(3).dtype == torch.uint8


def test_training_steps_lower_the_loss_and_the_checkpoint_loads(cache, tokenizer, tokenizer_dir, tmp_path):
    from model.nextchat import NextChat
    from model.toy_model.__main__ import copy_tokenizer

    torch.manual_seed(0)
    model, clip, raw = new_networks(len(tokenizer), seed=0)
    recipe = JointRecipe(steps=1, batch_size=4, lr=2e-3, warmup=1, sam_images=2)
    trainer = JointTrainer(model, clip, tokenizer, cache, recipe)
    trainer.rng = random.Random(0)
    first = trainer.step()
    for _ in range(11):
        trainer.rng = random.Random(0)   # the same batch: the losses must fall
        last = trainer.step()
    assert last["lm"] < 0.7 * first["lm"] and last["mask"] < first["mask"] and last["box"] < first["box"]
    assert last["patch"] < first["patch"]   # the probes (category, colour, row, column, box) learn too
    copy_tokenizer(tokenizer_dir, tmp_path)
    save_checkpoint(model.eval(), clip.eval(), raw, tmp_path)
    nc = NextChat.from_pretrained(tmp_path)
    assert nc.model.sam.image_encoder.img_size == SAM_SIZE
    scene = cache.scenes[0]
    from model.toy_world import make_scene

    image = make_scene(scene.seed, scene.index, long_side=200).image
    region = nc.segment(image, box=[10, 10, 80, 60])
    assert region.mask.shape == (image.height, image.width)
    assert nc.model.state_dict()["loc_decoder.2.bias"].allclose(model.state_dict()["loc_decoder.2.bias"])


def test_patch_targets_name_the_object_under_each_cell(cache):
    from model.toy_model.data import COLOURS, patch_targets
    from model.toy_world import CATEGORIES

    grid = TOY_SPEC["clip"]["image"] // TOY_SPEC["clip"]["patch"]
    for index, scene in enumerate(cache.scenes):
        categories, colours, owners = patch_targets(scene, cache.masks(index), grid)
        assert torch.equal(categories, cache.patch_categories[index])
        assert torch.equal(owners >= 0, categories > 0)
        for cell_index in (owners >= 0).nonzero()[:, 0].tolist():   # a labelled cell carries its object's box
            assert torch.equal(cache.patch_boxes[index][cell_index], cache.boxes[index][owners[cell_index]])
        assert not cache.patch_boxes[index][owners < 0].any()
        cell = SAM_SIZE // grid
        for number, (obj, mask) in enumerate(zip(scene.objects, cache.masks(index))):
            ys, xs = mask.nonzero(as_tuple=True)
            if not len(xs):
                continue
            y, x = int(ys.float().median()) // cell, int(xs.float().median()) // cell
            covered = mask[y * cell:(y + 1) * cell, x * cell:(x + 1) * cell].float().mean()
            if covered > 0.6:   # a cell the object mostly fills is labelled with it
                assert categories[y * grid + x] == CATEGORIES.index(obj.category) + 1
                assert colours[y * grid + x] == (COLOURS.index(obj.colour) + 1 if obj.colour else 0)
                assert torch.equal(cache.patch_boxes[index][y * grid + x], cache.boxes[index][number])
    assert (cache.patch_categories == 0).float().mean() > 0.3   # the sky and the ground are background


def test_one_decoder_call_over_several_images_equals_segment_anythings_per_image_calls():
    from model.toy_model.sam_batch import decode_single_masks

    model, _, _ = new_networks(vocab=405, seed=3)
    sam = model.sam.eval()
    grid = sam.image_encoder.img_size // 16
    torch.manual_seed(1)
    embeddings = torch.randn(2, sam.prompt_encoder.embed_dim, grid, grid)           # two images
    boxes = torch.tensor([[10.0, 20, 90, 120], [40, 40, 200, 180], [0, 0, 255, 255]])
    images = torch.tensor([0, 1, 1])                                               # the image of each box
    extra = torch.randn(3, 4, sam.prompt_encoder.embed_dim)                        # seg_prompt_mlp's tokens
    sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
    with torch.no_grad():
        masks, ious = decode_single_masks(sam.mask_decoder, embeddings[images], sam.prompt_encoder.get_dense_pe(),
                                          torch.cat([extra, sparse], dim=1), dense)
        for image in (0, 1):
            picks = (images == image).nonzero()[:, 0]
            expected, expected_iou = sam.mask_decoder(
                image_embeddings=embeddings[image:image + 1], image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=torch.cat([extra[picks], sparse[picks]], dim=1),
                dense_prompt_embeddings=dense[picks], multimask_output=False)
            assert masks[picks].shape == expected.shape and ious[picks].shape == expected_iou.shape
            assert torch.allclose(masks[picks], expected, atol=1e-5)
            assert torch.allclose(ious[picks], expected_iou, atol=1e-6)
    with pytest.raises(ValueError, match="2 image embeddings for 3 prompts"):
        decode_single_masks(sam.mask_decoder, embeddings, sam.prompt_encoder.get_dense_pe(), sparse, dense)
