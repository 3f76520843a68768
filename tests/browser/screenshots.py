"""Screenshots the browser tests take and look into: saved under the test's tmp_path, decoded here
(PNG, no imaging library) so a test can tell a page that rendered from a blank one."""

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Page


@dataclass
class Screenshot:
    path: Path
    width: int
    height: int
    rows: list[bytes]  # RGB(A) bytes per row
    channels: int

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        start = x * self.channels
        return tuple(self.rows[y][start : start + 3])

    def colours(self, top: int = 0, bottom: int | None = None) -> dict[tuple[int, ...], int]:
        """How many pixels of each colour between rows `top` and `bottom`."""
        counts: dict[tuple[int, ...], int] = {}
        for row in self.rows[top:bottom]:
            for x in range(0, len(row), self.channels):
                colour = tuple(row[x : x + 3])
                counts[colour] = counts.get(colour, 0) + 1
        return counts

    def has_colour_near(self, rgb: tuple[int, int, int], top: int, bottom: int, tolerance: int = 12) -> bool:
        return any(
            all(abs(a - b) <= tolerance for a, b in zip(colour, rgb, strict=True))
            for colour in self.colours(top, bottom)
        )


def _unfilter(raw: bytes, width: int, height: int, channels: int) -> list[bytes]:
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b, c = previous[i], previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return rows


def decode_png(path: Path) -> Screenshot:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and colour_type in (2, 6), f"{path}: an unexpected PNG format"
    channels = 3 if colour_type == 2 else 4
    rows = _unfilter(zlib.decompress(b"".join(chunks)), width, height, channels)
    return Screenshot(path, width, height, rows, channels)


async def screenshot(page: Page, directory: Path, name: str) -> Screenshot:
    """The page as it shows now, saved as `directory/name.png`, checked to be the viewport's size and
    not blank (a rendered page has text: many colours, and not one colour nearly everywhere)."""
    path = directory / f"{name}.png"
    await page.screenshot(path=path)
    shot = decode_png(path)
    viewport = page.viewport_size
    assert viewport is not None
    assert (shot.width, shot.height) == (viewport["width"], viewport["height"]), f"size of {path}"
    counts = shot.colours()
    background = max(counts.values())
    assert len(counts) > 50, f"{path} looks blank: {len(counts)} colours"
    assert background < 0.97 * shot.width * shot.height, f"{path} looks blank: one colour nearly everywhere"
    return shot
