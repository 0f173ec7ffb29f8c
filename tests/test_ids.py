"""ID numbers (python-stdnum cn.ric + birth date not in the future) and phone numbers."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from core.ids import IdError, check_id, check_phone, is_valid_id, normalise_id, provinces

TODAY = date(2026, 3, 1)


def with_check(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


valid_bodies = st.builds(
    lambda prov, area, born, seq: f"{prov}{area:04d}{born:%Y%m%d}{seq:03d}",
    st.sampled_from(sorted(provinces())), st.integers(0, 9999),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY), st.integers(0, 999))


@given(valid_bodies)
def test_every_well_formed_number_with_its_check_digit_is_accepted(body):
    number = with_check(body)
    found = check_id(number, TODAY)
    assert found.number == number
    assert found.birth_date == date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    # lower-case x, spaces and full-width digits are the same number
    spaced = " ".join([number[:6], number[6:14], number[14:]]).lower()
    assert check_id(spaced, TODAY).number == number


@given(valid_bodies, st.integers(0, 17), st.integers(1, 9))
def test_any_single_wrong_digit_is_caught(body, position, delta):
    number = with_check(body)
    chars = list(number)
    if chars[position] == "X":
        chars[position] = "0"
    else:
        chars[position] = str((int(chars[position]) + delta) % 10)
    wrong = "".join(chars)
    assert wrong != number
    assert not is_valid_id(wrong, TODAY)


@given(valid_bodies, st.integers(0, 16))
def test_swapping_two_neighbouring_digits_is_caught(body, i):
    number = with_check(body)
    if number[i] == number[i + 1] or "X" in number[i:i + 2]:
        return
    swapped = number[:i] + number[i + 1] + number[i] + number[i + 2:]
    assert not is_valid_id(swapped, TODAY)


@given(st.dates(min_value=TODAY + timedelta(days=1), max_value=date(2099, 12, 31)),
       st.integers(0, 999))
def test_a_birth_date_after_today_is_refused(born, seq):
    number = with_check(f"320582{born:%Y%m%d}{seq:03d}")
    with pytest.raises(IdError) as e:
        check_id(number, TODAY)
    assert e.value.code == "future"


@given(st.text(max_size=30))
@settings(max_examples=300)
def test_garbage_never_passes_and_never_crashes(text):
    try:
        found = check_id(text, TODAY)
    except IdError as e:
        assert e.code in ("length", "format", "checksum", "birth_date", "future", "too_old",
                          "province")
    else:  # only if hypothesis stumbled on a real number
        assert ric.calc_check_digit(found.number) == found.number[-1]


@pytest.mark.parametrize("text,code", [
    ("32058219600517101", "length"),
    ("3205821960051710145", "length"),
    ("32058219600517101A", "format"),
    ("320582196005171015", "checksum"),
    (with_check("32058219601317101"), "birth_date"),   # month 13
    (with_check("32058219600230101"), "birth_date"),   # 30 February
    (with_check("32058218800101101"), "too_old"),
    (with_check("99058219600517101"), "province"),
])
def test_each_kind_of_wrong_number_has_its_code(text, code):
    with pytest.raises(IdError) as e:
        check_id(text, TODAY)
    assert e.value.code == code


def test_old_people_of_counties_created_after_their_birth_are_accepted():
    """stdnum's own validate() refuses these (area code 320582 exists from 1989 on); real cards
    carry the code of the year they were issued, so a 1940-born 张家港 villager has it."""
    number = with_check("32058219400517101")
    assert not ric.is_valid(number)
    assert check_id(number, TODAY).birth_date == date(1940, 5, 17)


def test_born_today_is_fine():
    assert check_id(with_check(f"320582{TODAY:%Y%m%d}001"), TODAY).birth_date == TODAY


def test_voice_recognition_digits():
    number = with_check("36042619910101007")
    spoken = "".join("零一二三四五六七八九"[int(c)] if c.isdigit() else c for c in number)
    assert normalise_id(spoken) == number


@pytest.mark.parametrize("text,expected", [
    ("13800138000", "13800138000"),
    ("138 0013 8000", "13800138000"),
    ("+86 13800138000", "13800138000"),
    ("１３８００１３８０００", "13800138000"),
    ("0512-58881234", "0512-58881234"),
    ("051258881234", "0512-58881234"),
    ("12800138000", None),
    ("1380013800", None),
    ("138001380001", None),
    ("电话", None),
    ("", None),
])
def test_phone_numbers(text, expected):
    assert check_phone(text) == expected
