"""NExT-Chat tokenizer: the release's slow-LlamaTokenizer rules, reproduced on sentencepiece.

Rules (docs/model.md): split on added tokens (longest match), strip whitespace around the five added
tokens, encode each chunk with sentencepiece, and with ``legacy=False`` drop the dummy-prefix "▁"
of every chunk that follows an added token and does not start with a space. Bos is prepended.

User text never yields special ids: parts passed to :meth:`encode` as user text keep ``<at>``, ``</s>`` ... as text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

# The five tokens the release adds, in the order it adds them (nextchat_base.py).
IMAGE_PATCH = "<im_patch>"
IMAGE_START = "<im_start>"
IMAGE_END = "<im_end>"
AT = "<at>"
BOXES = "<boxes>"
ADDED_TOKENS = (IMAGE_PATCH, IMAGE_START, IMAGE_END, AT, BOXES)
SPIECE_UNDERLINE = "\u2581"


class TokenizerError(ValueError):
    """The checkpoint's tokenizer files are missing or inconsistent."""


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    unk: int
    im_patch: int
    im_start: int
    im_end: int
    at: int
    boxes: int


class NextChatTokenizer:
    """Encodes and decodes exactly like the release's 4.31 slow tokenizer."""

    def __init__(self, sp_model: spm.SentencePieceProcessor, added_tokens: dict[str, int], legacy: bool):
        self.sp = sp_model
        self.legacy = legacy
        self.added_tokens = dict(added_tokens)
        self.id_to_added = {v: k for k, v in self.added_tokens.items()}
        self.bos_token, self.eos_token, self.unk_token = "<s>", "</s>", "<unk>"
        self.control_tokens = {
            self.bos_token: sp_model.bos_id(),
            self.eos_token: sp_model.eos_id(),
            self.unk_token: sp_model.unk_id(),
        }
        missing = [t for t in ADDED_TOKENS if t not in self.added_tokens]
        if missing:
            raise TokenizerError(f"tokenizer lacks the NExT-Chat tokens {missing}; added_tokens.json has "
                                 f"{sorted(self.added_tokens)}")
        self.ids = SpecialIds(
            bos=sp_model.bos_id(), eos=sp_model.eos_id(), unk=sp_model.unk_id(),
            im_patch=self.added_tokens[IMAGE_PATCH], im_start=self.added_tokens[IMAGE_START],
            im_end=self.added_tokens[IMAGE_END], at=self.added_tokens[AT], boxes=self.added_tokens[BOXES],
        )
        splitters = sorted(list(self.added_tokens) + list(self.control_tokens), key=len, reverse=True)
        self._split_re = re.compile("(" + "|".join(re.escape(t) for t in splitters) + ")")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dir(cls, directory: str | Path) -> NextChatTokenizer:
        directory = Path(directory)
        model_file = directory / "tokenizer.model"
        if not model_file.is_file():
            raise TokenizerError(f"no tokenizer.model in {directory}")
        sp = spm.SentencePieceProcessor()
        sp.Load(str(model_file))
        config = _read_json(directory / "tokenizer_config.json")
        legacy = bool(config.get("legacy", True))
        added = _read_added_tokens(directory, config)
        base = sp.GetPieceSize()
        # Tokens the release adds with add_tokens get ids after the sentencepiece vocab, in order.
        next_id = max([base - 1, *added.values()]) + 1
        for token in ADDED_TOKENS:
            if token not in added:
                added[token] = next_id
                next_id += 1
        return cls(sp, added, legacy)

    def __len__(self) -> int:
        return max(self.sp.GetPieceSize() - 1, *self.added_tokens.values()) + 1

    # ------------------------------------------------------------------ encoding
    def encode(self, prompt: str | list[tuple[str, bool]], add_bos: bool = True) -> list[int]:
        """Encode a prompt. ``prompt`` is markup text (added and control tokens are tokens), or a
        list of ``(text, is_markup)`` parts: parts with ``is_markup=False`` (user text) are always
        plain text, so ``<at>`` or ``</s>`` typed by a user never becomes a special id."""
        parts = [(prompt, True)] if isinstance(prompt, str) else prompt
        items = self._split(parts)
        ids = [self.ids.bos] if add_bos else []
        for i, (kind, value) in enumerate(items):
            if kind == "added":
                ids.append(self.added_tokens[value])
                continue
            if kind == "control":
                ids.append(self.control_tokens[value])
                continue
            chunk = value
            if i > 0 and items[i - 1][0] == "added":
                chunk = chunk.lstrip()
            if i + 1 < len(items) and items[i + 1][0] == "added":
                chunk = chunk.rstrip()
            if chunk:
                ids.extend(self._encode_chunk(chunk, at_start=(i == 0)))
        return ids

    def _split(self, parts: list[tuple[str, bool]]) -> list[tuple[str, str]]:
        """Markup parts split on tokens; consecutive text (markup or user) merged into one chunk."""
        items: list[tuple[str, str]] = []
        for text, is_markup in parts:
            pieces = self._split_re.split(text) if is_markup else [text]
            for piece in pieces:
                if piece == "":
                    continue
                if is_markup and piece in self.added_tokens:
                    items.append(("added", piece))
                elif is_markup and piece in self.control_tokens:
                    items.append(("control", piece))
                else:
                    if not self.legacy:
                        piece = piece.replace(SPIECE_UNDERLINE, " ")
                    if items and items[-1][0] == "text":
                        items[-1] = ("text", items[-1][1] + piece)
                    else:
                        items.append(("text", piece))
        return items

    def _encode_chunk(self, chunk: str, at_start: bool) -> list[int]:
        if self.legacy:
            return list(self.sp.EncodeAsIds(chunk))
        pieces = list(self.sp.EncodeAsPieces(chunk))
        if not at_start and not chunk.startswith(" ") and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
            stripped = pieces[0][1:]
            pieces = ([stripped] if stripped else []) + pieces[1:]
        return [self.sp.PieceToId(p) for p in pieces]

    # ------------------------------------------------------------------ decoding
    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Like the 4.31 slow decoder: added tokens are kept (with a space each side),
        bos/eos/unk are dropped when ``skip_special_tokens``."""
        controls = set(self.control_tokens.values())
        parts: list[str] = []
        run: list[int] = []

        def flush():
            if run:
                parts.append(self.sp.DecodeIds(run))
                run.clear()

        for token_id in (int(t) for t in ids):
            if token_id in self.id_to_added:
                flush()
                parts.append(self.id_to_added[token_id])
            elif token_id in controls and skip_special_tokens:
                continue
            elif token_id in controls:
                flush()
                parts.append(self.sp.IdToPiece(token_id))
            else:
                run.append(token_id)
        flush()
        return " ".join(p.strip() for p in parts if p.strip())


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _read_added_tokens(directory: Path, config: dict) -> dict[str, int]:
    added = {k: int(v) for k, v in _read_json(directory / "added_tokens.json").items()}
    for id_str, entry in (config.get("added_tokens_decoder") or {}).items():
        content = entry.get("content") if isinstance(entry, dict) else None
        if content in ADDED_TOKENS:
            added.setdefault(content, int(id_str))
    return added
