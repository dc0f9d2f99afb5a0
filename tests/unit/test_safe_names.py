"""Harvested file names: what a Drive title or object name may not smuggle into a destination."""

from __future__ import annotations

import unicodedata

import pytest

from airflow_provider_gee.operators.harvest import safe_name


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("../escape.tif", "_escape.tif"),
        ("invoice\u202egpj.tif", "invoice_gpj.tif"),  # right-to-left override: would read "fit.jpg"
        ("ze\u200bro\u200dwidth.tif", "ze_ro_width.tif"),
        ('a<b>c:d"e|f?g*h.csv', "a_b_c_d_e_f_g_h.csv"),
        ("CON", "_CON"),
        ("nul.tif", "_nul.tif"),
        ("com1.csv", "_com1.csv"),
        ("console.tif", "console.tif"),  # only the device names themselves
        ("tile\x00.tif", "tile_.tif"),
    ],
)
def test_a_title_becomes_a_name_that_reads_as_what_it_is(title, name):
    assert safe_name(title) == name


def test_no_format_or_control_character_survives_any_title():
    every = "".join(chr(c) for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF)
    for start in range(0, len(every), 150):
        name = safe_name(f"x{every[start : start + 150]}.tif")
        assert not {unicodedata.category(c) for c in name} & {"Cc", "Cf", "Cs", "Co", "Cn"}
        assert "/" not in name and "\\" not in name and len(name.encode()) <= 200
