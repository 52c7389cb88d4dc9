"""State machine diagrams: no trigger label sits on another label or on a state box (issue 17: the job
diagram's labels overlapped)."""

from __future__ import annotations

import pytest

from statemachines.tables import TABLES
from sync.dashboard.diagram import BOX_H, BOX_W, _layout, _overlaps, label_rects


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_labels_overlap_neither_each_other_nor_a_state(kind: str) -> None:
    labels = label_rects(kind)
    boxes = [(b.x, b.y, b.x + BOX_W, b.y + BOX_H) for b in _layout(kind).values()]
    assert labels, "every machine has straight arrows with labels"
    clashes = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :] if _overlaps(a, b)]
    assert clashes == []
    assert [label for label in labels if any(_overlaps(label, box) for box in boxes)] == []
