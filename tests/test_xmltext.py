"""Broadsheet's XML escaping gives exactly what xml.sax.saxutils gives (it avoids that
module's heavy imports), for any text."""

from __future__ import annotations

from xml.sax import saxutils

from hypothesis import given, settings
from hypothesis import strategies as st

from broadsheet import xmltext

TEXT = st.text(alphabet=st.sampled_from(list("ab &<>\"'\n\r\té;#")) | st.characters())


@settings(max_examples=2000, deadline=None)
@given(TEXT)
def test_escape_and_quoteattr_match_the_standard_library(text: str) -> None:
    assert xmltext.escape(text) == saxutils.escape(text)
    assert xmltext.quoteattr(text) == saxutils.quoteattr(text)
