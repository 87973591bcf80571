"""Loading errors name what is wrong; supported layouts load."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import CheckpointError, NextChat


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_and_unexpected_keys_are_named(tiny_checkpoint, tiny_vision_tower, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    state = load_file(str(ckpt / "model.safetensors"))
    del state["loc_decoder.0.weight"]
    state["model.extra_head.weight"] = torch.zeros(2)
    state["model.vision_tower.vision_model.embeddings.patch_embedding.weight"] = torch.zeros(1)  # ignored
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        NextChat.from_pretrained(ckpt, vision_tower=tiny_vision_tower)
    assert "missing keys [loc_decoder.0.weight]" in str(err.value)
    assert "unexpected keys [model.extra_head.weight]" in str(err.value)
    assert "vision_tower" not in str(err.value)


def test_pickled_bin_is_refused_by_weights_only(tiny_checkpoint, tiny_vision_tower, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    (ckpt / "model.safetensors").unlink()

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Payload()}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        NextChat.from_pretrained(ckpt, vision_tower=tiny_vision_tower)


def test_plain_bin_and_sharded_safetensors_load(tiny_checkpoint, tiny_vision_tower, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    bin_dir = copy_checkpoint(tiny_checkpoint, tmp_path / "bin")
    (bin_dir / "model.safetensors").unlink()
    torch.save(state, bin_dir / "pytorch_model.bin")
    sharded = copy_checkpoint(tiny_checkpoint, tmp_path / "sharded")
    (sharded / "model.safetensors").unlink()
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    weight_map = {}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(sharded / name))
        weight_map.update({k: name for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    reference = NextChat.from_pretrained(tiny_checkpoint, vision_tower=tiny_vision_tower)
    for folder in (bin_dir, sharded):
        nc = NextChat.from_pretrained(folder, vision_tower=tiny_vision_tower)
        for (name, a), b in zip(reference.model.state_dict().items(), nc.model.state_dict().values()):
            assert torch.equal(a, b), name


def test_missing_tokenizer_and_folder_are_clear(tiny_checkpoint, tiny_vision_tower, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    (ckpt / "tokenizer.model").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer.model"):
        NextChat.from_pretrained(ckpt, vision_tower=tiny_vision_tower)
    with pytest.raises(CheckpointError, match="checkpoint folder .* does not exist"):
        NextChat.from_pretrained(tmp_path / "nowhere", vision_tower=tiny_vision_tower)
    with pytest.raises(CheckpointError, match="vision tower folder .*no-tower does not exist"):
        NextChat.from_pretrained(tiny_checkpoint, vision_tower=tmp_path / "no-tower")


def test_hub_id_offline_without_cache_is_a_clear_error(tiny_vision_tower, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="hub"):
        NextChat.from_pretrained("AoZhang/nextchat-7b-336", vision_tower=tiny_vision_tower)


def test_vocab_mismatch_quotes_numbers(tiny_checkpoint, tiny_vision_tower, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    config = json.loads((ckpt / "config.json").read_text())
    config["vocab_size"] = 999
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="405 tokens but config.json vocab_size is 999"):
        NextChat.from_pretrained(ckpt, vision_tower=tiny_vision_tower)


def test_wrong_tower_width_quotes_numbers(tiny_checkpoint, random_tiny_checkpoint, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    config = json.loads((ckpt / "config.json").read_text())
    config["mm_hidden_size"] = 32
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError):
        NextChat.from_pretrained(ckpt, vision_tower=random_tiny_checkpoint / "vision_tower")
