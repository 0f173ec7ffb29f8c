"""The Chinese font for everything huzhu draws: the sample claim documents, the disclosure
poster, the year report's charts and the village QR-code posters.

Where the face comes from, in this order:
1. `FONT_FILE` (config key, or HUZHU_FONT_FILE): that file and nothing else. A file that is not
   a CJK face, or cannot be read, is an error (`FontError` naming the file), never a silent
   fall-back to another face.
2. A CJK font of the system: the usual paths of Noto Sans CJK / WenQuanYi / PingFang, then
   fontconfig's (`fc-match`, `fc-list`) Chinese fonts when fontconfig is installed.
3. The packaged one: Noto Sans CJK (OFL-1.1) from the `noto-cjk-sans-otc` package, a dependency,
   so `pip install` alone is enough.

A face counts as CJK only if it has real glyphs for Chinese characters: Pillow draws a
character the font lacks with the font's .notdef box, so each probe character must draw
something different from that box (and from the other probes). In a collection (.ttc) the
Simplified Chinese face is chosen (Noto's index 2; its first face draws Japanese forms).
Platform-free: no Flask, no WeChat.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

PROBE = "院费互助"  # each must have its own glyph
NOTDEF_PROBE = "\U000FFFFD"  # private use: no Chinese font maps it, so it draws .notdef
MAX_FACES = 32

SYSTEM_FONTS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian, Ubuntu (fonts-noto-cjk)
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch, Fedora
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",  # macOS
    "C:/Windows/Fonts/msyh.ttc",  # Windows: Microsoft YaHei
)
USE_FONTCONFIG = True


class FontError(RuntimeError):
    """No usable CJK face; the message names the file(s) tried."""


@dataclass(frozen=True)
class Face:
    path: str
    index: int
    name: str  # family and style, e.g. "Noto Sans CJK SC Regular"
    source: str  # "FONT_FILE", "system" or "packaged"

    def get(self, size: int) -> ImageFont.FreeTypeFont:
        return _truetype(self.path, self.index, size)


@lru_cache(maxsize=64)
def _truetype(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index)


def _mask(font: ImageFont.FreeTypeFont, ch: str) -> tuple:
    m = font.getmask(ch)
    return m.size, bytes(m)


def draws_cjk(font: ImageFont.FreeTypeFont) -> bool:
    """True if every PROBE character has a glyph of its own (not the .notdef box, not empty)."""
    notdef = _mask(font, NOTDEF_PROBE)
    seen = set()
    for ch in PROBE:
        m = _mask(font, ch)
        if m == notdef or m in seen or font.getmask(ch).getbbox() is None:
            return False
        seen.add(m)
    return True


def _rank(name: str) -> int:
    """Simplified Chinese faces first, Japanese and Korean ones last; monospaced after the rest."""
    words = name.replace("-", " ").split()
    if any(w in ("SC", "CN", "GB", "Hans") for w in words):
        rank = 0
    elif any(w in ("TC", "HK", "TW", "Hant") for w in words):
        rank = 2
    elif any(w in ("JP", "KR", "Japanese", "Korean") for w in words):
        rank = 3
    else:
        rank = 1
    return rank * 2 + ("Mono" in words)


@lru_cache(maxsize=32)
def _inspect(path: str, _stamp: tuple) -> tuple[int, str] | str:
    """(face index, name) of the best CJK face in the file, or the reason there is none."""
    best: tuple[int, int, str] | None = None
    for index in range(MAX_FACES):
        try:
            font = ImageFont.truetype(path, 32, index=index)
        except (OSError, ValueError) as exc:
            if index == 0:
                return f"cannot be read as a font ({exc})"
            break  # past the last face of a collection
        name = " ".join(n for n in font.getname() if n)
        if draws_cjk(font):
            cand = (_rank(name), index, name)
            best = cand if best is None or cand < best else best
    if best is None:
        return f"is not a CJK font (no glyphs for {PROBE})"
    return best[1], best[2]


def cjk_face(path: str | os.PathLike, source: str = "FONT_FILE") -> Face:
    """The CJK face of this font file (the Simplified Chinese one of a collection).
    Raises FontError naming the file if it is missing, unreadable or not a CJK font."""
    path = str(path)
    try:
        st = os.stat(path)
    except OSError:
        raise FontError(f"font file {path}: not found")
    if not Path(path).is_file():
        raise FontError(f"font file {path}: not a file")
    found = _inspect(path, (st.st_size, st.st_mtime_ns))
    if isinstance(found, str):
        raise FontError(f"font file {path}: {found}")
    return Face(path, found[0], found[1], source)


def packaged_font() -> Path | None:
    """Noto Sans CJK from the noto-cjk-sans-otc package, if it is installed."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    return Path(str(noto_cjk_sans_otc.FONT_PATH))


def _fontconfig() -> list[str]:
    if not USE_FONTCONFIG or shutil.which("fc-match") is None:
        return []
    found: list[str] = []
    for cmd in (["fc-match", "-f", "%{file}\n", "sans-serif:lang=zh-cn"],
                ["fc-list", ":lang=zh-cn", "file"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            p = line.strip().rstrip(":").strip()
            if p and p not in found:
                found.append(p)
    return found


def system_candidates() -> list[str]:
    return [p for p in SYSTEM_FONTS if os.path.isfile(p)] + _fontconfig()


def configured_font_file() -> str:
    """FONT_FILE from the configuration (HUZHU_FONT_FILE overrides config/huzhu.toml)."""
    from core.config import load_config

    return str(load_config(validate=False).values.get("FONT_FILE") or "").strip()


def find_cjk_face() -> Face:
    """The face to draw Chinese with (see the module's docstring). Raises FontError naming
    what was tried when there is none."""
    return _find(configured_font_file())


@lru_cache(maxsize=8)
def _find(override: str) -> Face:
    if override:
        return cjk_face(override, "FONT_FILE")
    tried: list[str] = []
    for path in system_candidates():
        try:
            return cjk_face(path, "system")
        except FontError:
            tried.append(path)
    packaged = packaged_font()
    if packaged is None:
        raise FontError("no CJK font: none among the system fonts"
                        f"{' (' + ', '.join(tried) + ')' if tried else ''}, and the package "
                        "noto-cjk-sans-otc is not installed (pip install noto-cjk-sans-otc, "
                        "or set FONT_FILE)")
    return cjk_face(packaged, "packaged")


def clear_cache() -> None:
    """Forget the face found (after FONT_FILE or the system's fonts changed)."""
    _find.cache_clear()
    _inspect.cache_clear()
