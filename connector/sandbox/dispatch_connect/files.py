"""The emulator's files: what the files-api serves for a file token, and billing documents as PDFs.

Every attachment the technician adds (`add_attachment`) is held as a small generated PNG under its token;
`put_file` holds any bytes (a size to test limits), `expire_file` makes a token answer 410. The formats are
the playbook's (square/proportional/vertical 50/100/250): an image is rendered at that size, other files
are served as held. Billing documents render as a minimal valid one-page PDF naming the document.
"""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from connector.dispatch_connect.files import FORMATS, ORIGINAL

ORIGINAL_SIZE = (64, 48)


@dataclass
class HeldFile:
    content: bytes
    content_type: str
    name: str | None = None
    expired: bool = False


def png(width: int, height: int, rgb: tuple[int, int, int] = (214, 90, 49)) -> bytes:
    """A valid PNG of one colour (8-bit RGB, no interlace)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def pdf(text: str) -> bytes:
    """A minimal valid one-page PDF showing `text` (objects, xref table with exact offsets, trailer)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1", "replace")
    stream = b"BT /F1 14 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def rendered_size(file_format: str) -> tuple[int, int]:
    shape, _, size = file_format.partition("_")
    n = int(size)
    return {"square": (n, n), "proportional": (n, n * 3 // 4), "vertical": (n * 3 // 4, n)}[shape]


class FileHolding:
    """Mixed into the emulator: the files it holds by token, and the answers of the files endpoints."""

    store: Any  # the emulator's RecordStore (billing documents)

    def count(self, name: str, n: int = 1) -> None:
        raise NotImplementedError

    @property
    def held_files(self) -> dict[str, HeldFile]:
        if "_held_files" not in self.__dict__:
            self.__dict__["_held_files"] = {}
            self.__dict__["_files_lock"] = threading.Lock()
        files: dict[str, HeldFile] = self.__dict__["_held_files"]
        return files

    def hold_file(self, token: str, name: str | None = None) -> None:
        """What an attachment added in the field uploads: a small PNG under its token."""
        self.held_files.setdefault(token, HeldFile(png(*ORIGINAL_SIZE), "image/png", name))

    def put_file(
        self, token: str, size: int | None = None, content_type: str = "image/png", name: str | None = None
    ) -> int:
        """Hold a file of `size` bytes (a PNG padded to that size) or the default PNG; returns its size."""
        content = png(*ORIGINAL_SIZE)
        if size is not None:
            content = (content + b"\x00" * max(0, size - len(content)))[: max(size, 0)]
        self.held_files[token] = HeldFile(content, content_type, name)
        return len(content)

    def expire_file(self, token: str) -> bool:
        held = self.held_files.get(token)
        if held is None:
            raise KeyError(f"no file {token}")
        held.expired = True
        return True

    def file_answer(self, token: str, file_format: str) -> tuple[int, bytes, str]:
        """(status, body, content type) of `GET /v1/datafiles/{token}[/{format}]`."""
        self.count("files_served")
        held = self.held_files.get(token)
        if file_format not in FORMATS:
            return 400, f'{{"error": "unknown format {file_format}"}}'.encode(), "application/json"
        if held is None:
            return 404, b'{"error": "file not found"}', "application/json"
        if held.expired:
            return 410, b'{"error": "file token expired"}', "application/json"
        if file_format == ORIGINAL or not held.content_type.startswith("image/"):
            return 200, held.content, held.content_type
        return 200, png(*rendered_size(file_format)), "image/png"

    def billing_pdfs(self, job_id: Any) -> dict[str, str]:
        """Every billing document of the Dispatch job `job_id` as a base64 PDF, by billing document id."""
        docs = self.store.snapshot("billing_document").values()
        mine = [d for d in docs if str(d.get("job_id")) == str(job_id)]
        self.count("pdfs_rendered", len(mine))
        return {
            str(d["id"]): base64.b64encode(pdf(f"{d.get('doc_type', 'Document')} {d['id']}")).decode()
            for d in mine
        }
