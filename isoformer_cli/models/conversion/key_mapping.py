"""Table-driven renaming of another library's state-dict keys onto our model's keys.

A table is a sequence of :class:`MappingRow`: a regular expression on the foreign key and either our
key (``re.sub`` replacement) or ``IGNORE`` with the reason; the first matching row wins.
:func:`plan_conversion` routes every foreign key and reports, without touching tensor data:

* matched keys (and second spellings of an already matched tensor: *duplicates*),
* ignored keys with the row's reason, or because the target is a tensor our model does not hold on
  purpose (:data:`UNUSED_TARGETS`: recomputed buffers, unused position tables, contact heads),
* unmatched keys with their shapes, wrong shapes, and the tensors of ours that nothing fills.

Used by ``isoformer convert`` (the official checkpoint) and ``isoformer init`` (pretrained encoders).
"""

import re
from dataclasses import dataclass, field

import torch

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.checkpoint.weights import (
    COMPUTED_BUFFER_PATTERN,
    format_shape,
    name_some,
    tensor_aliases,
    transformers_renames,
)

IGNORE = None

# Mapped names that our model does not hold, on purpose; dropped with this reason instead of reported.
UNUSED_TARGETS = (
    (COMPUTED_BUFFER_PATTERN.pattern, "buffer recomputed from the configuration"),
    (r"\.embeddings\.position_embeddings\.weight$", "absolute position table, unused by rotary encoders"),
    (r"(^|\.)contact_head\.", "contact-prediction head (not used by IsoFormer)"),
)


@dataclass(frozen=True)
class MappingRow:
    """One rule: keys matching ``pattern`` become ``re.sub(pattern, replacement, key)``, or are ignored."""

    pattern: str
    replacement: str | None
    reason: str = ""

    def apply(self, key):
        """Our key (str), IGNORE (None) when this row ignores ``key``, or False when the row does not match."""
        if re.match(self.pattern, key) is None:
            return False
        if self.replacement is IGNORE:
            return IGNORE
        return re.sub(self.pattern, self.replacement, key, count=1)


def read_mapping_file(path):
    """Extra rows from a tab-separated file: ``REGEX<TAB>REPLACEMENT`` (``-`` to ignore), ``#`` comments."""
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the key mapping file: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0]:
            raise CheckpointError(f"{path}:{number}: expected 'REGEX<TAB>REPLACEMENT' (use - to ignore a key)")
        pattern, replacement = parts[0], parts[1].strip()
        try:
            re.compile(pattern)
        except re.error as exc:
            raise CheckpointError(f"{path}:{number}: invalid regular expression {pattern!r}: {exc}") from exc
        rows.append(MappingRow(pattern, IGNORE if replacement == "-" else replacement, f"{path}:{number}"))
    return tuple(rows)


@dataclass
class ConversionPlan:
    """Where every foreign tensor goes, and what is wrong.

    Attributes:
        targets: foreign key -> our key, for every matched tensor (duplicates included).
        ignored: (foreign key, reason).
        unmatched: (foreign key, shape): no row matched, or the row's target is not in our model.
        wrong_shape: (foreign key, our key, shape in the file, shape in our model).
        duplicates: foreign keys that are a second spelling of an already matched tensor.
        missing: our keys (canonical names) that no foreign tensor fills.
        conflicting: "key / key" pairs of spellings of one tensor with different values (filled by callers
            that hold the tensor data).
    """

    source: str
    targets: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)
    unmatched: list = field(default_factory=list)
    wrong_shape: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    conflicting: list = field(default_factory=list)

    @property
    def refused(self):
        return bool(self.wrong_shape or self.missing or self.conflicting)

    def matched_count(self):
        return len(self.targets) - len(self.duplicates)

    def summary(self):
        """One line with the counts."""
        return (
            f"{self.matched_count():,} tensors matched ({len(self.duplicates):,} duplicate spellings), "
            f"{len(self.ignored):,} ignored, {len(self.unmatched):,} unmatched, "
            f"{len(self.wrong_shape):,} with the wrong shape, {len(self.missing):,} of ours not initialised"
        )

    def problems(self, limit=5):
        """One line naming what blocks the conversion (empty when nothing does)."""
        parts = []
        if self.missing:
            shown = name_some(self.missing, limit)
            parts.append(f"{len(self.missing):,} tensors of the model would stay uninitialised ({shown})")
        if self.wrong_shape:
            shown = ", ".join(
                f"{key} -> {ours} is {format_shape(found)} in the file but {format_shape(expected)} in the model"
                for key, ours, found, expected in sorted(self.wrong_shape)[:limit]
            )
            more = f" and {len(self.wrong_shape) - limit:,} more" if len(self.wrong_shape) > limit else ""
            parts.append(f"{len(self.wrong_shape):,} with the wrong shape ({shown}{more})")
        if self.conflicting:
            parts.append(
                f"{len(self.conflicting):,} spelled twice with different values ({name_some(self.conflicting, limit)})"
            )
        if self.unmatched and parts:
            shown = ", ".join(f"{key} {format_shape(shape)}" for key, shape in sorted(self.unmatched)[:limit])
            more = f" and {len(self.unmatched) - limit:,} more" if len(self.unmatched) > limit else ""
            parts.append(f"{len(self.unmatched):,} tensors of the file unmatched ({shown}{more})")
        return "; ".join(parts)

    def check_values(self, tensors):
        """Record spellings of one tensor of ours whose values differ (``tensors``: foreign key -> tensor)."""
        first_key = {}
        for key, ours in self.targets.items():
            if ours in first_key:
                first, second = tensors[first_key[ours]], tensors[key]
                # Spellings saved from one module share storage: same memory, no need to compare values.
                same_memory = (
                    first.data_ptr() == second.data_ptr()
                    and first.shape == second.shape
                    and first.stride() == second.stride()
                    and first.dtype == second.dtype
                )
                if not same_memory and not torch.equal(first, second):
                    self.conflicting.append(f"{first_key[ours]} / {key}")
            else:
                first_key[ours] = key

    def tensors_for(self, tensors, prefix=""):
        """``{our key without prefix: tensor}`` from the foreign ``tensors``, one entry per tensor of ours."""
        return {
            ours[len(prefix) :]: tensors[key]
            for key, ours in self.targets.items()
            if key not in self.duplicates and ours.startswith(prefix)
        }


def map_key(key, rows):
    """``(our key or IGNORE, reason)`` for one foreign key; ``(False, "")`` when no row matches."""
    for row in rows:
        target = row.apply(key)
        if target is not False:
            return target, row.reason
    return False, ""


def unused_reason(target):
    """Why our model does not hold ``target`` on purpose, or None."""
    for pattern, reason in UNUSED_TARGETS:
        if re.search(pattern, target):
            return reason
    return None


def plan_conversion(foreign_shapes, model, rows, source="weights", required_prefix=""):
    """Route every foreign key (``{key: shape}``) onto ``model``'s keys; shapes only (meta models work).

    Only tensors of ours whose name starts with ``required_prefix`` must be filled (the others are
    not reported missing): ``"protein_encoder."`` when loading just that encoder.
    """
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict(keep_vars=True).items()}
    aliases = tensor_aliases(model)
    plan = ConversionPlan(source=source)
    mapped = {}
    for key, shape in foreign_shapes.items():
        target, reason = map_key(key, rows)
        if target is IGNORE:
            plan.ignored.append((key, reason))
        elif target is False:
            plan.unmatched.append((key, tuple(shape)))
        else:
            mapped[key] = target
    renames = transformers_renames(set(mapped.values()), expected)
    filled = {}
    for key, target in mapped.items():
        ours = renames[target] or target
        if ours not in expected:
            reason = unused_reason(ours)
            if reason is not None:
                plan.ignored.append((key, reason))
            else:
                plan.unmatched.append((key, tuple(foreign_shapes[key])))
            continue
        canonical = aliases[ours]
        if canonical in filled:
            plan.duplicates.append(key)
        filled.setdefault(canonical, key)
        plan.targets[key] = ours
        if tuple(foreign_shapes[key]) != expected[ours]:
            plan.wrong_shape.append((key, ours, tuple(foreign_shapes[key]), expected[ours]))
    plan.missing = sorted(
        name
        for name in set(aliases.values())
        if name.startswith(required_prefix) and name not in filled and not COMPUTED_BUFFER_PATTERN.search(name)
    )
    return plan
