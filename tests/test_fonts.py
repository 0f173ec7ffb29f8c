"""The Chinese font: FONT_FILE, else a system CJK font, else the packaged Noto Sans CJK — so a
machine with no fonts installed (no fonts-noto-cjk, no fontconfig) still draws Chinese, and a
file that is not a CJK font is refused by name instead of drawing .notdef boxes."""
from __future__ import annotations

import pytest
from PIL import ImageFont

from bot.clients import poster
from bot.devtools import claim_samples as samples
from core import fonts


@pytest.fixture
def no_system_fonts(monkeypatch, tmp_path):
    """A bare machine: none of the usual font paths, and fontconfig knowing no fonts."""
    empty = tmp_path / "fonts.conf"
    empty.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">'
                     "<fontconfig></fontconfig>")
    monkeypatch.setenv("FONTCONFIG_FILE", str(empty))
    monkeypatch.setattr(fonts, "SYSTEM_FONTS", ())
    monkeypatch.delenv("HUZHU_FONT_FILE", raising=False)
    fonts.clear_cache()
    assert fonts.system_candidates() == []
    yield
    fonts.clear_cache()


@pytest.fixture
def latin_font(tmp_path):
    """A real font without Chinese glyphs: Pillow's own default face."""
    path = tmp_path / "latin.ttf"
    path.write_bytes(ImageFont.load_default(20).font_bytes)
    return path


def test_on_a_bare_machine_the_packaged_simplified_chinese_face_is_used(no_system_fonts):
    face = fonts.find_cjk_face()
    assert face.source == "packaged"
    assert face.path.endswith("NotoSansCJK-Regular.ttc")
    assert face.name == "Noto Sans CJK SC Regular" and face.index == 2  # not the JP face 0


def test_sample_documents_are_drawn_with_a_cjk_face(no_system_fonts):
    """Every character the documents print in Chinese has a glyph of its own: a font without
    them would draw the same .notdef box for each and OCR would read nothing."""
    face = samples.face()
    assert fonts.draws_cjk(face.get(28))
    f = samples.font(28)
    notdef = f.getmask(fonts.NOTDEF_PROBE)
    for ch in "住院费用清单出院记录结算单苏州市医疗保障局":
        m = f.getmask(ch)
        assert (m.size, bytes(m)) != (notdef.size, bytes(notdef)), ch
    img = samples.settlement_sheet(samples.Stay())
    assert img.size[0] > 500 and img.getextrema() != ((255, 255),) * 3


def test_poster_and_samples_use_the_same_face(no_system_fonts):
    font = poster.find_font()
    assert font is not None and (font.path, font.index) == (samples.face().path,
                                                            samples.face().index)


def test_the_check_tells_a_latin_font_from_a_cjk_one(latin_font):
    assert not fonts.draws_cjk(ImageFont.truetype(str(latin_font), 32))
    noto = fonts.packaged_font()
    assert noto is not None and noto.is_file()
    assert fonts.draws_cjk(ImageFont.truetype(str(noto), 32, index=2))


def test_font_file_is_used_when_set(monkeypatch):
    noto = str(fonts.packaged_font())
    monkeypatch.setenv("HUZHU_FONT_FILE", noto)
    face = fonts.find_cjk_face()
    assert (face.path, face.index, face.source) == (noto, 2, "FONT_FILE")


@pytest.mark.parametrize("bad", ["latin", "corrupt", "missing", "folder"])
def test_a_bad_font_file_makes_the_sample_generator_raise_naming_it(
        monkeypatch, tmp_path, latin_font, bad):
    path = {"latin": latin_font, "corrupt": tmp_path / "corrupt.ttc",
            "missing": tmp_path / "missing.ttc", "folder": tmp_path}[bad]
    if bad == "corrupt":
        path.write_bytes(b"ttcf" + bytes(range(256)) * 8)
    monkeypatch.setenv("HUZHU_FONT_FILE", str(path))
    with pytest.raises(samples.FontMissing) as err:
        samples.settlement_sheet(samples.Stay())
    assert str(path) in str(err.value)
    assert {"latin": "not a CJK font", "corrupt": "cannot be read as a font",
            "missing": "not found", "folder": "not a file"}[bad] in str(err.value)


def test_a_bad_font_file_never_falls_back_to_another_face(monkeypatch, latin_font, caplog):
    """FONT_FILE is what the operator asked for: a wrong one is reported, not replaced."""
    monkeypatch.setenv("HUZHU_FONT_FILE", str(latin_font))
    with pytest.raises(fonts.FontError):
        fonts.find_cjk_face()
    assert poster.find_font() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(latin_font) in warnings[0]
