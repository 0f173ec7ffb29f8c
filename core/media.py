"""Photos sent with a claim: checked, stored once by content, perceptually hashed.

`store(data_dir, data)` checks the bytes (at most MAX_BYTES; JPEG, PNG or WebP as Pillow reads
them, whatever the sender claimed; at most MAX_PIXELS pixels), writes them once under
`DATA_DIR/media/<first two hex digits>/<sha256>.<ext>` (atomically, readable by the owner
only) and returns a `StoredMedia` with the SHA-256, size, content type, path, the perceptual hash
(imagehash pHash, 16 hex digits) and the decoded image (EXIF rotation applied) for OCR.
Anything else raises `MediaRefused` with a reason code the caller turns into a reply.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from core.files import private_dir

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 50_000_000  # a 12-megapixel phone photo is far below; a decompression bomb is not
FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"),
           "WEBP": ("image/webp", "webp")}
EXTENSIONS = {ctype: ext for ctype, ext in FORMATS.values()}
# why a file is refused: empty, too_large, not_image, unsupported_type
REASONS = ("empty", "too_large", "not_image", "unsupported_type")


class MediaRefused(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StoredMedia:
    sha256: str
    size: int
    content_type: str
    path: Path
    phash: str
    image: Image.Image = field(repr=False, compare=False)


def inspect(data: bytes, max_bytes: int = MAX_BYTES) -> tuple[str, Image.Image]:
    """(content type, decoded RGB image) of an acceptable photo; MediaRefused otherwise."""
    if not data:
        raise MediaRefused("empty")
    if len(data) > max_bytes:
        raise MediaRefused("too_large", f"{len(data)} bytes > {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            if fmt not in FORMATS:
                raise MediaRefused("unsupported_type", str(fmt))
            if img.width * img.height > MAX_PIXELS:
                raise MediaRefused("too_large", f"{img.width}x{img.height} pixels")
            img.load()
    except MediaRefused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise MediaRefused("not_image", type(exc).__name__) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise MediaRefused("not_image", f"{type(exc).__name__}: {exc}") from exc
    img = ImageOps.exif_transpose(img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return FORMATS[fmt][0], img


def path_for(data_dir: str | Path, sha256: str, content_type: str) -> Path:
    return Path(data_dir) / "media" / sha256[:2] / f"{sha256}.{EXTENSIONS[content_type]}"


def _write_once(path: Path, data: bytes) -> None:
    if path.exists() and path.stat().st_size == len(data):
        return
    private_dir(path.parent.parent)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def phash(img: Image.Image) -> str:
    import imagehash  # numpy and SciPy: loaded when a photo is first hashed, not at every start

    return str(imagehash.phash(img))


def phash_distance(a: str, b: str) -> int:
    """Hamming distance of two pHashes as stored (hex): 0 = the same picture, ≤ 4 almost surely
    the same. Integer XOR and a bit count."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def phash_bands(value: str, within: int) -> list[tuple[int, int]]:
    """(band, bits) of a pHash (hex) cut into `within` + 1 bands of nearly equal width: two
    hashes at most `within` bits apart leave at least one band without a differing bit, so
    they share that band whole (the near-duplicate look-up's index, DocumentPhashBand)."""
    bits = len(value) * 4
    number = int(value, 16)
    count = within + 1
    width = -(-bits // count)
    return [(band, (number >> (band * width)) & ((1 << width) - 1)) for band in range(count)
            if band * width < bits]


def store(data_dir: str | Path, data: bytes, max_bytes: int = MAX_BYTES) -> StoredMedia:
    content_type, img = inspect(data, max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    path = path_for(data_dir, digest, content_type)
    _write_once(path, data)
    return StoredMedia(sha256=digest, size=len(data), content_type=content_type, path=path,
                       phash=phash(img), image=img)


def read(data_dir: str | Path, sha256: str, content_type: str) -> bytes:
    return path_for(data_dir, sha256, content_type).read_bytes()
