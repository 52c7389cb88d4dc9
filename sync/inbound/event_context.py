"""What every report handler works with: the open transaction, the mapping, and which delivery it applies."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from connector.mapping import MappingConfig


@dataclass
class EventContext:
    session: Session
    mapping: MappingConfig
    msg_id: str
    system: str
    label: str  # the back end's name in messages people read
