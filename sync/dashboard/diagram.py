"""A server-side SVG of one state machine: no JavaScript renderer is available offline.

Layout: states in columns by their distance from the initial states (a breadth-first walk), arrows as straight
lines between box edges with the trigger written at the middle. Crude, but readable for tables of < 10 states.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from markupsafe import Markup, escape

from statemachines import transition_table
from statemachines.tables import TABLES

BOX_W, BOX_H, COL_GAP, ROW_GAP, MARGIN = 120, 34, 110, 40, 20
LABEL_AT = 0.35
BOW_ROOM = 110  # right of the last column, for curved arrows and their labels


@dataclass(frozen=True)
class Box:
    state: str
    x: int
    y: int
    initial: bool

    @property
    def cx(self) -> float:
        return self.x + BOX_W / 2

    @property
    def cy(self) -> float:
        return self.y + BOX_H / 2


def _columns(kind: str) -> list[list[str]]:
    table = TABLES[kind]
    edges: dict[str, list[str]] = {}
    for _trigger, source, dest in transition_table(kind):
        edges.setdefault(source, []).append(dest)
    depth: dict[str, int] = {s: 0 for s in table.initial}
    queue = deque(table.initial)
    while queue:
        state = queue.popleft()
        for nxt in edges.get(state, []):
            if nxt not in depth:
                depth[nxt] = depth[state] + 1
                queue.append(nxt)
    last = max(depth.values(), default=0)
    for state in table.states:  # entry-only or unreachable states go in a last column
        depth.setdefault(state, last + 1)
    columns: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for state in table.states:
        columns[depth[state]].append(state)
    return [c for c in columns if c]


def _layout(kind: str) -> dict[str, Box]:
    initial = set(TABLES[kind].initial)
    boxes: dict[str, Box] = {}
    for ci, column in enumerate(_columns(kind)):
        for ri, state in enumerate(column):
            x = MARGIN + ci * (BOX_W + COL_GAP)
            y = MARGIN + ri * (BOX_H + ROW_GAP)
            boxes[state] = Box(state, x, y, state in initial)
    return boxes


def _edge_point(box: Box, toward: Box) -> tuple[float, float]:
    """Where the line from `box`'s centre toward `toward`'s centre leaves `box`."""
    dx, dy = toward.cx - box.cx, toward.cy - box.cy
    if dx == 0 and dy == 0:
        return box.cx, box.cy
    scale = min(
        (BOX_W / 2) / abs(dx) if dx else float("inf"),
        (BOX_H / 2) / abs(dy) if dy else float("inf"),
    )
    return box.cx + dx * scale, box.cy + dy * scale


Rect = tuple[float, float, float, float]  # x0, y0, x1, y1
CHAR_W, LABEL_H = 6.2, 11.0  # the trigger font's average glyph width and line height, in px
LABEL_POSITIONS = (LABEL_AT, 0.5, 0.2, 0.65, 0.8, 0.1, 0.9)  # along the arrow, tried in this order


def _label_rect(x: float, y: float, text: str, anchor: str) -> Rect:
    width = CHAR_W * len(text)
    x0 = {"start": x, "end": x - width}.get(anchor, x - width / 2)
    return (x0, y - LABEL_H + 2, x0 + width, y + 2)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_rects(kind: str) -> list[Rect]:
    """Where each straight arrow's label lands (for the test that labels never overlap)."""
    boxes = _layout(kind)
    placed: list[Rect] = [(b.x, b.y, b.x + BOX_W, b.y + BOX_H) for b in boxes.values()]
    first = len(placed)
    _arrows(kind, boxes, placed)
    return placed[first:]


def _arrows(kind: str, boxes: dict[str, Box], placed: list[Rect] | None = None) -> list[str]:
    labels: dict[tuple[str, str], list[str]] = {}
    for trigger, source, dest in transition_table(kind):
        labels.setdefault((source, dest), []).append(trigger)
    if placed is None:
        placed = [(b.x, b.y, b.x + BOX_W, b.y + BOX_H) for b in boxes.values()]
    parts = []
    for (source, dest), triggers in labels.items():
        a, b = boxes[source], boxes[dest]
        text = ", ".join(triggers)
        if a.x == b.x and abs(a.y - b.y) > BOX_H + ROW_GAP:
            parts.append(_bow(a, b, str(escape(text))))
            continue
        x1, y1 = _edge_point(a, b)
        x2, y2 = _edge_point(b, a)
        # Shift a pair of opposite arrows apart (perpendicular to the line) so both stay visible.
        shift = 5.0 if (dest, source) in labels else 0.0
        length = max(((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5, 1.0)
        nx, ny = -(y2 - y1) / length * shift, (x2 - x1) / length * shift
        x1, y1, x2, y2 = x1 + nx, y1 + ny, x2 + nx, y2 + ny
        lx, ly, anchor = _place_label((x1, y1, x2, y2), nx, text, placed)
        parts.append(
            f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" class="arrow" '
            'marker-end="url(#head)"/>'
            f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="{anchor}" class="trigger">{escape(text)}</text>'
        )
    return parts


def _place_label(line: Rect, nx: float, text: str, placed: list[Rect]) -> tuple[float, float, str]:
    """The first spot along the arrow where the label overlaps no box and no label placed before it (a third
    of the way from the source first, so arrows into one state keep their labels apart)."""
    x1, y1, x2, y2 = line
    vertical = abs(x2 - x1) < 1
    anchor = ("end" if nx > 0 else "start") if vertical else "middle"
    candidates = []
    for at in LABEL_POSITIONS:
        lx, ly = x1 + (x2 - x1) * at, y1 + (y2 - y1) * at + 4
        if vertical:  # write beside the line, on the side it was shifted to
            lx += -4 if nx > 0 else 4
        for dy in (0.0, -LABEL_H, LABEL_H):
            candidates.append((lx, ly + dy))
    for lx, ly in candidates:
        rect = _label_rect(lx, ly, text, anchor)
        if not any(_overlaps(rect, other) for other in placed):
            placed.append(rect)
            return lx, ly, anchor
    lx, ly = candidates[0]
    placed.append(_label_rect(lx, ly, text, anchor))
    return lx, ly, anchor


def _bow(a: Box, b: Box, text: str) -> str:
    """An arrow between non-adjacent boxes of one column, curved out to the right so it passes no box."""
    span = abs(a.y - b.y) / (BOX_H + ROW_GAP)
    x1, y1, x2, y2 = a.x + BOX_W, a.cy, b.x + BOX_W, b.cy
    bulge = 22 * span + (26 if a.y > b.y else 0)  # an upward arrow bows further than its downward twin
    cx, cy = x1 + bulge, (y1 + y2) / 2
    lx, ly = x1 + bulge / 2 + 3, cy + (12 if a.y > b.y else 0)
    return (
        f'<path d="M{x1:.0f},{y1:.0f} Q{cx:.0f},{cy:.0f} {x2:.0f},{y2:.0f}" class="arrow" fill="none" '
        'marker-end="url(#head)"/>'
        f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="start" class="trigger">{text}</text>'
    )


def machine_svg(kind: str) -> Markup:
    boxes = _layout(kind)
    width = max(b.x for b in boxes.values()) + BOX_W + MARGIN + BOW_ROOM
    height = max(b.y for b in boxes.values()) + BOX_H + MARGIN
    shapes = [
        f'<rect x="{b.x}" y="{b.y}" width="{BOX_W}" height="{BOX_H}" rx="6" '
        f'class="state{" initial" if b.initial else ""}"/>'
        f'<text x="{b.cx:.0f}" y="{b.cy + 4:.0f}" class="name">{escape(b.state)}</text>'
        for b in boxes.values()
    ]
    head = (
        '<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>'
    )
    body = "".join([head, *_arrows(kind, boxes), *shapes])
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(kind)} state machine" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="machine">{body}</svg>'
    )
