"""One rule's export engine: follow the store in position order, write files, then move the checkpoint.

Every stored row has a position (:data:`~scorewatch.store.schema.POSITION`) larger than those of the
rows its writer committed before it, so "everything of this writer's stream up to position P is in the
target" is the whole state of a rule for that stream: its checkpoint, the document
``exports/<rule id>/checkpoint`` (``checkpoint-<stream>`` for a stream other than 0; with one hub there
is only stream 0, and the document is ``<home>/exports/<rule id>/checkpoint.json``). An
:class:`Exporter` follows one stream; a round takes its next range (P, upto] in these durable steps:

1. read the range's rows (of the rule's application and tables), between two of the store's writes
   when it can (see :meth:`Exporter.round`), and render the files; for each file that is appended
   to, note the size it has now;
2. write the checkpoint with ``pending``: the range, the delivery time and those sizes;
3. write every file (:meth:`Target.put`: a whole file at once; :meth:`Target.append`: from the noted
   size);
4. write the checkpoint with P = upto and nothing pending.

Each checkpoint write is atomic (temporary file, fsync, rename). A crash or an error anywhere (SIGKILL,
the target down for hours, rejected credentials, a full disk) leaves either nothing pending, and then
nothing of the round is in the target, or a pending range, which the next round writes again from the
same rows (retention keeps everything above P) under the same names and delivery time: a put
replaces what the interrupted attempt wrote and an append starts again from the noted size. So each
row lands in the target exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scorewatch.documents import Documents
from scorewatch.export.formats import FORMAT_WRITERS, Batch, Output
from scorewatch.export.rules import Rule
from scorewatch.export.targets import Target
from scorewatch.store.base import Store, stream_bounds

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("scorewatch.export")


@dataclass
class Checkpoint:
    """A rule's progress: rows up to ``position`` are in the target. Totals count what was exported."""

    position: int
    end: int | None = None                 # a one-shot export: the last position it exports
    pending: dict[str, Any] | None = None  # a round being written: {"upto", "time", "sizes"}
    items: int = 0
    files: int = 0
    bytes: int = 0


def parse_time(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def state_key(rule_id: str) -> str:
    """The documents of a rule's state are this key and those under it."""
    return f"exports/{rule_id}"


def checkpoint_key(rule_id: str, stream: int = 0) -> str:
    return f"{state_key(rule_id)}/checkpoint" + (f"-{stream}" if stream else "")


def read_checkpoint(documents: Documents, rule_id: str, stream: int = 0) -> Checkpoint | None:
    data = documents.read(checkpoint_key(rule_id, stream))
    return Checkpoint(**data) if isinstance(data, dict) else None


def read_checkpoints(documents: Documents, rule_id: str) -> dict[int, Checkpoint]:
    """Every stream's checkpoint of a rule."""
    out = {}
    base = checkpoint_key(rule_id)
    for key in documents.keys(state_key(rule_id)):
        if key == base or key.startswith(base + "-"):
            stream = int(key[len(base) + 1:] or 0)
            checkpoint = read_checkpoint(documents, rule_id, stream)
            if checkpoint is not None:
                out[stream] = checkpoint
    return out


def total(checkpoints: dict[int, Checkpoint]) -> Checkpoint | None:
    """Several streams' checkpoints as one: the totals added up (the position is the first stream's)."""
    if not checkpoints:
        return None
    first = checkpoints[min(checkpoints)]
    values = list(checkpoints.values())
    return Checkpoint(position=first.position, end=first.end, pending=first.pending,
                      items=sum(c.items for c in values), files=sum(c.files for c in values),
                      bytes=sum(c.bytes for c in values))


class Exporter:
    """Export rounds of ``rule`` from ``store`` to ``target`` for one writer's ``stream``, its
    checkpoint kept in ``documents``."""

    def __init__(self, store: Store, rule: Rule, target: Target, documents: Documents, *, max_items: int,
                 stream: int = 0) -> None:
        self.store, self.rule, self.target, self.documents = store, rule, target, documents
        self.stream = stream
        self.below, self.top = stream_bounds(stream)
        self.max_items = max_items
        self.format = FORMAT_WRITERS[rule.format]
        self.since, self.until = parse_time(rule.since), parse_time(rule.until)
        self.checkpoint = self._load()

    def last(self) -> int:
        """The position of the stream's last committed row (its floor when it has none)."""
        return max(self.store.row_positions().get(self.stream, self.below), self.below)

    def _load(self) -> Checkpoint:
        checkpoint = read_checkpoint(self.documents, self.rule.id, self.stream)
        last = self.last()
        if checkpoint is None:
            if self.rule.kind == "once":
                checkpoint = Checkpoint(position=self.below, end=last)  # what is stored now, old rows (0) included
            else:
                checkpoint = Checkpoint(position=self.below if self.rule.start == "beginning" else last)
            self._save(checkpoint)
        elif checkpoint.position > last:  # the store was replaced by a younger one
            log.error("export rule %s: its checkpoint (%d) is past the store's last row (%d): the store "
                      "was replaced; exporting the new store from its beginning", self.rule.name,
                      checkpoint.position, last)
            checkpoint = replace(checkpoint, position=self.below, pending=None)
            self._save(checkpoint)
        return checkpoint

    def _save(self, checkpoint: Checkpoint) -> None:
        self.documents.write(checkpoint_key(self.rule.id, self.stream), asdict(checkpoint), public=True)
        self.checkpoint = checkpoint

    @property
    def done(self) -> bool:
        """A one-shot export has written everything it set out to."""
        cp = self.checkpoint
        return cp.end is not None and cp.position >= cp.end and cp.pending is None

    def total(self) -> int:
        """Rows a one-shot export writes in all (0 for a continuous rule)."""
        if self.checkpoint.end is None:
            return 0
        return self.store.export_count(self.rule.app_id, self.rule.tables, after=self.below,
                                       upto=self.checkpoint.end, since=self.since, until=self.until)

    def lag_items(self) -> int:
        """Rows of the rule not in the target yet."""
        cp = self.checkpoint
        return self.store.export_count(self.rule.app_id, self.rule.tables, after=cp.position,
                                       upto=cp.end if cp.end is not None else self.top,
                                       since=self.since, until=self.until)

    def round(self, wait_s: float = 0.0) -> bool:
        """Export the next range; False when there was nothing new (caught up).

        The range's rows are read between two of the store's writes (:meth:`Store.between_writes`),
        waiting for a gap at most ``wait_s`` seconds: with ``wait_s`` over 0 and no gap in that time,
        the round stops before it has read or written anything and returns True (there is more to
        export: ask again); with ``wait_s`` 0 it reads beside the writes unless there is a gap at once.
        """
        cp = self.checkpoint
        if cp.pending is not None:  # an interrupted round: the same range, names and time again
            upto, when, sizes = cp.pending["upto"], datetime.fromisoformat(cp.pending["time"]), cp.pending["sizes"]
        else:
            last = cp.end if cp.end is not None else self.last()
            if last <= cp.position:
                return False
            upto, when, sizes = min(last, cp.position + self.max_items), datetime.now(UTC), None
        batch = Batch(self.rule, cp.position, upto, when)
        tables = self._read(batch, wait_s)
        if tables is None:
            return True
        outputs, items = self._render(tables, batch)
        if sizes is None:
            if not outputs:  # nothing of this rule's application in the range
                self._save(replace(cp, position=upto))
                return True
            sizes = {o.name: self.target.size(o.name) for o in outputs if o.append}
            self._save(replace(cp, pending={"upto": upto, "time": when.isoformat(), "sizes": sizes}))
        for output in outputs:
            if output.append:
                self.target.append(output.name, output.data, sizes[output.name])
            else:
                self.target.put(output.name, output.data)
        self._save(Checkpoint(position=upto, end=cp.end, items=cp.items + items, files=cp.files + len(outputs),
                              bytes=cp.bytes + sum(len(o.data) for o in outputs)))
        return True

    def _read(self, batch: Batch, wait_s: float) -> dict[str, pa.Table] | None:
        """The range's rows of each of the rule's tables (None: no gap between writes within ``wait_s``)."""
        with self.store.between_writes(wait_s) as between:
            if not between and wait_s > 0:
                return None
            return {table: self.store.export_rows(table, self.rule.app_id, after=batch.start, upto=batch.end,
                                                  since=self.since, until=self.until, maps=self.format.maps)
                    for table in self.rule.tables}

    def _render(self, tables: dict[str, pa.Table], batch: Batch) -> tuple[list[Output], int]:
        outputs: list[Output] = []
        items = 0
        for table, rows in tables.items():
            if rows.num_rows:
                items += rows.num_rows
                outputs.extend(self.format.render(table, rows, batch))
        return outputs, items
