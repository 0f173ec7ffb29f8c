"""Reply texts rendered from plain values are kept; the text is the same either way."""
from core import messages
from core.messages import render


def test_a_text_given_plain_values_is_the_same_whether_kept_or_rendered_anew():
    messages._render_plain.cache_clear()
    first = render("not_available", word="参加互助")
    again = render("not_available", word="参加互助")
    assert first == again == messages._render("not_available", {"word": "参加互助"})
    assert messages._render_plain.cache_info().hits == 1
    assert render("not_available", word="报销") != first  # another value, another text


def test_equal_values_of_other_types_are_not_mixed_up():
    """1 and True are equal dictionary keys; a template prints them differently."""
    messages._render_plain.cache_clear()
    assert render("cancelled", had_dialogue=True) == messages._render(
        "cancelled", {"had_dialogue": True})
    assert render("cancelled", had_dialogue=1) == messages._render(
        "cancelled", {"had_dialogue": 1})
    assert messages._render_plain.cache_info().misses == 2


def test_a_text_given_an_object_is_rendered_each_time():
    from datetime import date

    messages._render_plain.cache_clear()
    render("cancelled", had_dialogue=date(2026, 1, 1))
    assert messages._render_plain.cache_info().currsize == 0
