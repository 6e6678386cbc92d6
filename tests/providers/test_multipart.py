"""The form scan: the fields before an upload's file, however the body is split into chunks,
and never more than MAX_SCAN_BYTES held."""

from __future__ import annotations

from meterfox_cli.providers.multipart import MAX_SCAN_BYTES, FormScan, form_boundary

BOUNDARY = "a1b2c3"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    file = f'; filename="{filename}"' if filename else ""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{file}\r\n\r\n'
    return head.encode() + value + b"\r\n"


def scan(body: bytes, size: int) -> FormScan:
    found = FormScan(BOUNDARY)
    for start in range(0, len(body), size):
        if found.feed(body[start : start + size]):
            break
    return found


def test_the_fields_before_the_file_at_every_chunk_size():
    body = part("model", b"whisper-1") + part("stream", b"true") + part("file", b"x" * 500, "a.wav")
    for size in range(1, 80):
        found = scan(body + f"--{BOUNDARY}--\r\n".encode(), size)
        assert found.fields == {"model": "whisper-1", "stream": "true"} and found.done


def test_the_scan_stops_at_the_file_without_reading_it():
    found = FormScan(BOUNDARY)
    head = part("model", b"gpt-4o-transcribe") + part("file", b"", "a.wav")[:-2]
    assert found.feed(head) is True  # the file part's headers are enough to stop
    assert found.fields == {"model": "gpt-4o-transcribe"}


def test_a_field_after_the_file_is_not_waited_for_past_the_cap():
    found = FormScan(BOUNDARY)
    chunk = b"y" * 4096
    assert (
        found.feed(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="x"\r\n\r\n'.encode())
        is False
    )
    fed = 0
    while not found.feed(chunk):
        fed += len(chunk)
    assert fed <= MAX_SCAN_BYTES and found.fields == {}


def test_the_boundary_of_a_form_content_type_only():
    assert form_boundary('multipart/form-data; boundary="abc"') == "abc"
    assert form_boundary("Multipart/Form-Data; charset=x; boundary=q1") == "q1"
    assert form_boundary("application/json") is None
    assert form_boundary("multipart/form-data") is None
