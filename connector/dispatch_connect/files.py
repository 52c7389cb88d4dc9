"""Dispatch's files: the files-api (`GET /v1/datafiles/{token}[/{format}]`) and billing document PDFs.

The playbook's "Rendering Images > Get File" sends only `Content-Type`: the file token is the credential, so
no key or signature goes with it (and a token is no secret: it names one file). The answer's `Content-Type`
is the file's MIME type. `original` is the file as uploaded (the path without a format, as Dispatch's
`download_attachment.py` sample asks for it); the other formats are renderings of an image.

Billing document PDFs: the playbook documents them only as the Salesforce package's global function
`getBillingDocumentPdfs(jobId, options)`, which uses the package's stored (Dispatch Connect) credentials and
returns a map of billing document id -> base64 PDF. We read that as a signed Dispatch Connect call,
`POST /agent/billing_document_pdfs` with `{"job_id": ..., "options": {}}`, answering that map (an
assumption, written down in docs/wire-formats.md; the path is `PATH_BILLING_PDFS`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from email.message import Message
from urllib.parse import quote

import requests

from connector import jsoncodec
from connector.dispatch_connect.client import DispatchConnectClient, DispatchRejected, DispatchUnavailable
from connector.errors import FileUnavailable
from connector.ports import FetchedFile
from connector.retry import send_with_retries

FILES_SANDBOX_URL = "https://files-api-sandbox.dispatch.me"
FILES_PRODUCTION_URL = "https://files-api.dispatch.me"
PATH_DATAFILES = "/v1/datafiles"
PATH_BILLING_PDFS = "/agent/billing_document_pdfs"
ORIGINAL = "original"
FORMATS = (
    ORIGINAL,
    *(f"{shape}_{size}" for shape in ("square", "proportional", "vertical") for size in (50, 100, 250)),
)
DEFAULT_MAX_BYTES = 25 * 1024 * 1024
CHUNK = 64 * 1024


class DispatchFiles:
    """Downloads from the files-api and billing PDFs through the Dispatch Connect client."""

    def __init__(
        self,
        base_url: str,
        client: DispatchConnectClient,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.session = session or client.session
        self.timeout = timeout

    def url(self, token: str, file_format: str = ORIGINAL) -> str:
        path = f"{self.base_url}{PATH_DATAFILES}/{quote(token, safe='')}"
        return path if file_format == ORIGINAL else f"{path}/{quote(file_format, safe='')}"

    def fetch_file(self, token: str, file_format: str = ORIGINAL, *, max_bytes: int) -> FetchedFile:
        if file_format not in FORMATS:
            raise FileUnavailable(
                f"file {token}: unknown format {file_format!r} (one of {', '.join(FORMATS)})",
                token=token,
                reason="bad_format",
            )
        url = self.url(token, file_format)
        response = send_with_retries(
            lambda: self.session.get(url, stream=True, timeout=self.timeout),
            endpoint="files-api",
            service="Dispatch",
            max_attempts=self.client.max_attempts,
            backoff_s=self.client.backoff_s,
            unavailable=DispatchUnavailable,
        )
        with response:
            if response.status_code in (404, 410):
                reason = "expired" if response.status_code == 410 else "not_found"
                words = "has expired" if reason == "expired" else "is unknown to Dispatch"
                raise FileUnavailable(
                    f"file {token}: the token {words} (HTTP {response.status_code})",
                    token=token,
                    reason=reason,
                )
            if response.status_code >= 400:
                raise DispatchRejected(
                    f"Dispatch refused file {token} (HTTP {response.status_code})",
                    status=response.status_code,
                    endpoint="files-api",
                )
            content = _read_limited(response, token, max_bytes)
            mime = (response.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
            return FetchedFile(content, mime, _filename(response.headers.get("Content-Disposition")))

    def billing_pdfs(self, job_remote_id: str, *, max_bytes: int) -> Mapping[str, FetchedFile]:
        body = jsoncodec.dumps({"job_id": job_remote_id, "options": {}})
        response = self.client._post(PATH_BILLING_PDFS, body)  # signed like every Connect call
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise DispatchRejected(
                f"Dispatch answered billing PDFs of job {job_remote_id} with something that is not a map",
                status=response.status_code,
                endpoint=PATH_BILLING_PDFS.lstrip("/"),
            )
        pdfs: dict[str, FetchedFile] = {}
        for doc_id, encoded in answer.items():
            try:
                content = base64.b64decode(str(encoded), validate=True)
            except (binascii.Error, ValueError):
                continue  # an entry that is no base64 is no PDF; the others still count
            if len(content) > max_bytes:
                raise FileUnavailable(
                    f"billing document {doc_id} of job {job_remote_id}: PDF of {len(content)} bytes is over "
                    f"the limit of {max_bytes}",
                    token=f"{job_remote_id}/{doc_id}",
                    reason="too_large",
                )
            pdfs[str(doc_id)] = FetchedFile(content, "application/pdf", f"billing-document-{doc_id}.pdf")
        return pdfs


def _read_limited(response: requests.Response, token: str, max_bytes: int) -> bytes:
    """The body, refused as soon as it is known to pass `max_bytes` (Content-Length first, then counted)."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(token, int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(token, size, max_bytes, at_least=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(token: str, size: int, limit: int, *, at_least: bool = False) -> FileUnavailable:
    more = "at least " if at_least else ""
    return FileUnavailable(
        f"file {token}: {more}{size} bytes, over the limit of {limit} bytes", token=token, reason="too_large"
    )


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    message = Message()
    message["Content-Disposition"] = disposition
    name = message.get_filename()
    return str(name) if name else None
