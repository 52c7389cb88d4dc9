"""Salesforce Files in the emulator: inserting a ContentVersion makes its ContentDocument, and, with
`FirstPublishLocationId`, the ContentDocumentLink that shares it with that record (as Salesforce does).

Active only in an org whose fixture declares ContentVersion, ContentDocument and ContentDocumentLink.
`VersionData` is base64 on the way in (checked here: Salesforce refuses what does not decode); a query
returns it as stored, base64 (Salesforce returns a URL to the blob instead: the emulator keeps it simple).
The bytes themselves come from `GET sobjects/ContentVersion/<id>/VersionData` (rest.py, `blob_bytes`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

VERSION = "contentversion"
DOCUMENT = "ContentDocument"
LINK = "ContentDocumentLink"


class ContentError(ValueError):
    """A ContentVersion Salesforce would refuse: (code, message, field)."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code, self.field = code, field


def before_version(values: Mapping[str, Any]) -> dict[str, Any]:
    """Checks and derived values of a new ContentVersion (its size and extension)."""
    data = values.get("VersionData")
    if not data:
        raise ContentError(
            "REQUIRED_FIELD_MISSING", "Required fields are missing: [VersionData]", "VersionData"
        )
    if not values.get("PathOnClient"):
        raise ContentError(
            "REQUIRED_FIELD_MISSING", "Required fields are missing: [PathOnClient]", "PathOnClient"
        )
    try:
        size = len(base64.b64decode(str(data), validate=True))
    except (binascii.Error, ValueError):
        raise ContentError("INVALID_FIELD", "VersionData: not valid base64", "VersionData") from None
    path = str(values["PathOnClient"])
    extension = path.rsplit(".", 1)[1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return {"ContentSize": size, "FileExtension": extension, "IsLatest": True}


def after_version(
    insert: Callable[[str, Mapping[str, Any]], str],
    update: Callable[[str, str, Mapping[str, Any]], None],
    version_id: str,
    values: Mapping[str, Any],
) -> str:
    """The version's document (and its link to the record it was first published on); the document's id."""
    title = values.get("Title") or str(values.get("PathOnClient") or "")
    document = insert(
        DOCUMENT,
        {
            "Title": title,
            "FileExtension": values.get("FileExtension"),
            "ContentSize": values.get("ContentSize"),
            "LatestPublishedVersionId": version_id,
        },
    )
    if values.get("FirstPublishLocationId"):
        link = {"ContentDocumentId": document, "LinkedEntityId": values["FirstPublishLocationId"]}
        insert(LINK, {**link, "ShareType": "V", "Visibility": "AllUsers"})
    update("ContentVersion", version_id, {"ContentDocumentId": document})
    return document


def blob_bytes(stored: Any) -> bytes:
    """A base64 field's value as the blob resource serves it: the decoded bytes (none when the field is
    empty). Only valid base64 is ever stored (`before_version` checks it on the way in)."""
    return base64.b64decode(str(stored)) if stored else b""
