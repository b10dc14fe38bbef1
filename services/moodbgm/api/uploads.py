"""Uploads: the multipart body streamed to disk (never whole in memory), with limits, then checked by
ffprobe. A rejected upload leaves nothing on disk.

Files go to a staging folder ``<data_dir>/.uploads/<uuid>/`` under server-made names; the client's file
name is kept for display only and must be a plain name (no folders, no ``..``, no control characters).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from moodbgm import media
from moodbgm.errors import InputError

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
UPLOADS = ".uploads"

# ffprobe's format name -> the extension we store the input under
_FORMAT_EXT = {
    "mp4": "mp4",
    "mov": "mov",
    "matroska": "mkv",
    "webm": "webm",
    "avi": "avi",
    "flv": "flv",
    "mpegts": "ts",
    "mpeg": "mpg",
    "ogg": "ogv",
    "asf": "wmv",
    "3gp": "3gp",
}
_SAFE_NAME = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")


class UploadTooLarge(InputError):
    """Body or file over the configured size limit (HTTP 413)."""


class BadUpload(InputError):
    """Malformed request body or unusable file (HTTP 400)."""


@dataclass
class ReceivedFile:
    field: str
    name: str  # the client's file name (display only)
    path: Path  # where it was streamed to, in the staging folder
    size: int = 0
    hasher: Any = dataclasses.field(
        default_factory=hashlib.sha256, repr=False
    )  # of the content (Idempotency-Key)

    @property
    def sha256(self) -> str:
        return str(self.hasher.hexdigest())


@dataclass
class ReceivedForm:
    staging: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def check_name(name: str) -> str:
    """The client's file name if it is a plain name; raises BadUpload for anything path-like."""
    if not _SAFE_NAME.match(name) or name in (".", "..") or ".." in name.split("."):
        raise BadUpload(f"unsafe file name {name!r}: send a plain file name without folders")
    if os.path.basename(name) != name:
        raise BadUpload(f"unsafe file name {name!r}: send a plain file name without folders")
    return name


def new_staging(data_dir: Path) -> Path:
    d = data_dir / UPLOADS / uuid.uuid4().hex
    d.mkdir(parents=True)
    return d


class _Collector:
    """Callbacks of the streaming parser: fields to memory (small), files to disk (with a size cap)."""

    def __init__(self, form: ReceivedForm, max_file_bytes: int, max_files: int) -> None:
        self.form = form
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._headers: dict[str, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._field: str | None = None
        self._value = bytearray()
        self._file: ReceivedFile | None = None
        self._fh: IO[bytes] | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_hname", self._hname + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_hvalue", self._hvalue + d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self._headers, self._hname, self._hvalue = {}, b"", b""
        self._field, self._file, self._value = None, None, bytearray()

    def header_end(self) -> None:
        self._headers[self._hname.decode("latin-1").lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise BadUpload("malformed multipart body: a part has no form-data name")
        name = params[b"name"].decode("utf-8", "replace")
        if b"filename" in params:
            if len(self.form.files) >= self.max_files:
                raise BadUpload(f"too many files (at most {self.max_files} per request)")
            client_name = check_name(params[b"filename"].decode("utf-8", "replace"))
            path = self.form.staging / f"{len(self.form.files)}.upload"
            self._file = ReceivedFile(name, client_name, path)
            self.form.files.append(self._file)
            self._fh = path.open("wb")
        else:
            if len(self.form.fields) >= MAX_FIELDS:
                raise BadUpload("too many form fields")
            self._field = name

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None and self._fh is not None:
            self._file.size += end - start
            if self._file.size > self.max_file_bytes:
                mb = self.max_file_bytes // (1024 * 1024)
                raise UploadTooLarge(f"{self._file.name}: larger than the {mb} MB upload limit")
            self._fh.write(data[start:end])
            self._file.hasher.update(data[start:end])
        elif self._field is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise BadUpload(f"form field {self._field!r} is too long")

    def part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._field is not None:
            self.form.fields[self._field] = self._value.decode("utf-8", "replace")
        self._file, self._field = None, None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


async def receive_form(
    content_type: str,
    content_length: int | None,
    body: AsyncIterator[bytes],
    staging: Path,
    max_file_bytes: int,
    max_files: int,
) -> ReceivedForm:
    """Stream a multipart/form-data body into ``staging``. On any error the staging folder is removed."""
    form = ReceivedForm(staging)
    try:
        ctype, params = parse_options_header(content_type)
        if ctype != b"multipart/form-data" or b"boundary" not in params:
            raise BadUpload("send the upload as multipart/form-data")
        limit = max_file_bytes * max_files + MAX_FIELDS * MAX_FIELD_BYTES
        if content_length is not None and content_length > limit:
            raise UploadTooLarge(f"request body of {content_length} bytes is over the upload limit")
        collector = _Collector(form, max_file_bytes, max_files)
        parser = MultipartParser(params[b"boundary"], collector.callbacks(), max_size=limit)  # type: ignore[arg-type]
        try:
            async for chunk in body:
                if parser.write(chunk) != len(chunk):
                    raise UploadTooLarge("request body is over the upload limit")
            parser.finalize()
        finally:
            collector.close()
        if not form.files:
            raise BadUpload("no file in the upload (send it in a file field)")
        return form
    except InputError:
        form.discard()
        raise
    except Exception as e:  # the parser's own errors: a malformed body
        form.discard()
        raise BadUpload(f"malformed multipart body: {e}") from None


def check_media(upload: ReceivedFile, max_duration_s: float) -> Path:
    """Probe an uploaded file (content, not name) and rename it ``input.<ext>`` in its own folder.

    Raises ``InputError`` (empty, not media, no video, too long). Returns the new path.
    """
    if upload.size == 0:
        raise BadUpload(f"{upload.name}: the file is empty")
    info = media.require_video(media.probe(upload.path))
    if info.duration > max_duration_s:
        raise BadUpload(f"{upload.name}: {info.duration:.0f} s long; the limit is {max_duration_s:.0f} s")
    folder = upload.path.parent / upload.path.stem
    folder.mkdir()
    target = folder / f"input.{input_ext(info.format_name, upload.name)}"
    os.replace(upload.path, target)
    upload.path = target
    return target


def input_ext(format_name: str, client_name: str) -> str:
    """A safe extension for the stored input, from ffprobe's format (the client's suffix only breaks a
    tie inside the format's family, e.g. mov vs mp4)."""
    names = format_name.split(",")
    suffix = Path(client_name).suffix.lower().lstrip(".")
    if suffix in names and suffix in _FORMAT_EXT.values():
        return suffix
    for fmt, ext in _FORMAT_EXT.items():  # in the table's order of preference
        if fmt in names:
            return ext
    return "bin"
