"""Find the parts of a big /predict body this backend reads, without parsing what it does not need.

Label Studio sends every selected task with its annotations, predictions and drafts (brush RLE
included): most of a big body is data the backend never uses. :func:`scan_predict_body` walks the raw
bytes with one regular expression that matches JSON strings and brackets (numbers, commas and
whitespace, the bulk of RLE and polygon arrays, are skipped inside the regex engine) and returns
byte spans: the value of every top-level key except ``tasks``, and per task the values of ``id``,
``data`` and ``drafts``. Only those spans are then parsed with :mod:`json`, so what is skipped is never
turned into Python objects. The structure is checked (brackets balance, one object at the top,
``tasks`` an array of objects separated by commas); bytes inside skipped values are not validated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# a JSON string (escapes included), one bracket, or a quote that starts no complete string
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{}]')
_SPACE = re.compile(rb"[ \t\r\n]*")
_SCALAR_END = re.compile(rb"[,}\]]")
_GAP = re.compile(rb"[ \t\r\n]*,[ \t\r\n]*")
_EDGE = re.compile(rb"[ \t\r\n]*")
TASK_KEYS = (b'"id"', b'"data"', b'"drafts"', b'"annotations"', b'"predictions"')
MAX_DEPTH = 10_000


class ScanError(ValueError):
    """The body is not a JSON object of the expected shape; a one-line reason."""


@dataclass
class TaskSpans:
    start: int
    end: int = 0
    values: dict[str, tuple[int, int]] = field(default_factory=dict)  # a TASK_KEYS key -> the span of its value


@dataclass
class BodySpans:
    top: dict[str, tuple[int, int]] = field(default_factory=dict)  # top-level key -> value span (not tasks)
    tasks: list[TaskSpans] | None = None  # None: no "tasks" array
    tasks_span: tuple[int, int] | None = None


@dataclass
class _Open:
    kind: bytes           # b"{" or b"["
    start: int
    role: str = ""        # "top", "tasks", "task", or the key this container is the value of
    owner: object = None  # the BodySpans / TaskSpans whose key this container is the value of


class _Scanner:
    def __init__(self, buffer):
        self.buffer = buffer
        self.spans = BodySpans()
        self.stack: list[_Open] = []
        self.pending: tuple[int, str, object] | None = None  # (value start, key, owner) of a key seen

    def key_value_start(self, token_end: int) -> int | None:
        """After a string at object level: the start of its value if it is a key (a ':' follows)."""
        position = _SPACE.match(self.buffer, token_end).end()
        if position < len(self.buffer) and self.buffer[position:position + 1] == b":":
            return _SPACE.match(self.buffer, position + 1).end()
        return None

    def on_string(self, start: int, end: int) -> None:
        if self.pending is not None and self.pending[0] == start:
            _, key, owner = self.pending
            self.record(owner, key, start, end)
            self.pending = None
            return
        top = self.stack[-1] if self.stack else None
        if top is None or top.kind != b"{" or top.role not in ("top", "task"):
            return
        value_start = self.key_value_start(end)
        if value_start is None:
            return
        key = self.buffer[start:end]
        owner = self.spans if top.role == "top" else self.spans.tasks[-1]
        if top.role == "task" and key not in TASK_KEYS:
            return
        name = key[1:-1].decode("utf-8", "replace")
        first = self.buffer[value_start:value_start + 1]
        if first in (b"{", b"[", b'"'):
            self.pending = (value_start, name, owner)
        else:
            match = _SCALAR_END.search(self.buffer, value_start)
            self.record(owner, name, value_start, match.start() if match else len(self.buffer))

    def record(self, owner, key: str, start: int, end: int) -> None:
        if isinstance(owner, TaskSpans):
            owner.values[key] = (start, end)
        elif key != "tasks":
            owner.top[key] = (start, end)

    def on_open(self, kind: bytes, start: int) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise ScanError("malformed JSON: nested too deeply")
        entry = _Open(kind, start)
        if not self.stack:
            if kind != b"{":
                raise ScanError("expected a JSON object, got list")
            entry.role = "top"
        elif self.pending is not None and self.pending[0] == start:
            _, key, owner = self.pending
            self.pending = None
            entry.role, entry.owner = key, owner
            if owner is self.spans and key == "tasks" and kind == b"[":
                entry.role = "tasks"
                self.spans.tasks = []
        elif self.stack[-1].role == "tasks" and len(self.stack) == 2 and kind == b"{":
            entry.role = "task"
            self.spans.tasks.append(TaskSpans(start))
        self.stack.append(entry)

    def on_close(self, kind: bytes, end: int) -> None:
        if not self.stack or self.stack[-1].kind != (b"{" if kind == b"}" else b"["):
            raise ScanError("malformed JSON: brackets do not match")
        entry = self.stack.pop()
        if entry.role == "task":
            self.spans.tasks[-1].end = end
        elif entry.role == "tasks":
            self.spans.tasks_span = (entry.start, end)
        elif entry.owner is not None:
            self.record(entry.owner, entry.role, entry.start, end)

    def run(self) -> BodySpans:
        first = _SPACE.match(self.buffer, 0).end()
        if first >= len(self.buffer) or self.buffer[first:first + 1] not in (b"{", b"["):
            raise ScanError("malformed JSON: the body does not start with an object")
        end = None
        for match in _TOKEN.finditer(self.buffer, first):
            token = match.group()
            if token == b'"':
                raise ScanError("malformed JSON: unterminated string")
            if token[:1] == b'"':
                self.on_string(match.start(), match.end())
            elif token in (b"{", b"["):
                self.on_open(token, match.start())
            else:
                self.on_close(token, match.end())
                if not self.stack:
                    end = match.end()
                    break
        if end is None:
            raise ScanError("malformed JSON: the body ends inside an object")
        if _SPACE.match(self.buffer, end).end() != len(self.buffer):
            raise ScanError("malformed JSON: extra data after the object")
        self.check_task_gaps()
        return self.spans

    def check_task_gaps(self) -> None:
        """Between the task objects only commas and whitespace: every element of `tasks` is an object."""
        spans = self.spans
        if spans.tasks is None or spans.tasks_span is None:
            return
        edges = [spans.tasks_span[0] + 1] + [p for task in spans.tasks for p in (task.start, task.end)]
        edges.append(spans.tasks_span[1] - 1)
        for index in range(0, len(edges), 2):
            gap_start, gap_end = edges[index], edges[index + 1]
            pattern = _EDGE if index in (0, len(edges) - 2) else _GAP
            if pattern.fullmatch(self.buffer, gap_start, gap_end) is None:
                raise ScanError("'tasks' must be a list of task objects")


def scan_predict_body(buffer) -> BodySpans:
    """Spans of a /predict body held in `buffer` (bytes or an mmap); ScanError when malformed."""
    return _Scanner(buffer).run()
