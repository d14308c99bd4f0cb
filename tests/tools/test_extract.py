"""Extraction from real fixture pages: main text kept, boilerplate dropped, bytes decoded right."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from deepresearcher.errors import ExtractError
from deepresearcher.tools.extract import decode, extract, sniff_content_type

FIXTURES = Path(__file__).parent / "fixtures"


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_pdf(pages: list[list[str]], title: str = "") -> bytes:
    """A real PDF with one text line per string, made with reportlab."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    if title:
        pdf.setTitle(title)
    for lines in pages:
        for row, line in enumerate(lines):
            pdf.drawString(72, 800 - 20 * row, line)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def test_article_keeps_main_text_and_drops_boilerplate() -> None:
    page = extract(
        _read("article.html"),
        content_type="text/html; charset=utf-8",
        url="https://music.example/wiki/The_Real_Thing",
    )
    assert page.content_type == "text/html"
    assert page.title == "The Real Thing (British band)"
    assert "Ray Lake, a founding member of the band, died on 9 March 2000" in page.text
    assert "Everything – The Real Thing Story" in page.text
    for boilerplate in (
        "Accept all cookies",
        "Log in or create account",
        "Donate to the",
        "Related bands",
        "All rights reserved",
        "Share this article",
        "dataLayer",
    ):
        assert boilerplate not in page.text
    # Paragraphs are separated by blank lines, lines carry no trailing spaces.
    assert "in 1976.\n\n## History\n\nThe group grew" in page.text
    assert all(line == line.rstrip() for line in page.text.split("\n"))


def test_article_table_is_kept_as_rows() -> None:
    page = extract(_read("article.html"), content_type=None, url="local://wiki/article")
    assert "| Year | Single | UK peak |" in page.text
    assert "| 1979 | Can You Feel the Force? | 5 |" in page.text
    assert page.content_type == "text/html"  # sniffed: no header given


def test_undeclared_cp1252_is_decoded_right() -> None:
    for content_type in (None, "text/html"):
        page = extract(_read("cp1252_undeclared.html"), content_type=content_type, url="x")
        assert page.title == "Café “Zürich” – Menü"
        assert "Crème brûlée costs 8 € at the café on the Bahnhofstraße" in page.text
        assert "à côté de l’église — “c’est magnifique”" in page.text
        assert "Smörgåsbord, jalapeño and piñata are on the menu of the Ærø branch" in page.text


def test_wrong_declared_charset_falls_back_to_detection() -> None:
    # Servers often say UTF-8 for legacy pages: the declaration cannot decode them, detection can.
    page = extract(
        _read("cp1252_undeclared.html"), content_type="text/html; charset=utf-8", url="x"
    )
    assert "Crème brûlée" in page.text
    assert "\ufffd" not in page.text


def test_meta_charset_latin1_is_read_as_cp1252() -> None:
    page = extract(_read("latin1_meta.html"), content_type=None, url="x")
    assert page.title == "Señor Müller’s garden"
    assert "“el jardín más bonito”" in page.text
    assert "jalapeños, açaí and crème-coloured roses" in page.text


def test_header_charset_wins_over_detection() -> None:
    text = "Привет, мир. Это страница на русском языке, записанная в кодировке KOI8-R."
    html = f"<html><body><article><p>{text}</p><p>{text}</p></article></body></html>"
    page = extract(html.encode("koi8-r"), content_type="text/html; charset=KOI8-R", url="x")
    assert text in page.text


def test_byte_order_mark_decides_the_encoding() -> None:
    html = "<html><body><p>Ångström units measure ‘tiny’ lengths, said Ørsted.</p></body></html>"
    content = codecs.BOM_UTF16_LE + html.encode("utf-16-le")
    assert decode(content, declared_charset="iso-8859-1").startswith("<html>")
    assert (
        "Ångström units measure ‘tiny’ lengths" in extract(content, content_type=None, url="x").text
    )


def test_pdf_text_in_page_order_even_with_a_wrong_header() -> None:
    page = extract(_read("report.pdf"), content_type="text/html", url="local://wiki/report")
    assert page.content_type == "application/pdf"
    assert page.title == "Glass Harbour lighthouse report"
    assert page.text == (
        "The Glass Harbour lighthouse was lit for the first time on 14 October 1887.\n"
        "Its lens was ground in Paris and shipped in eleven crates.\n\n"
        "The last keeper, Ines Marrow, left the tower in 1962."
    )


def test_pdf_made_at_test_time_and_pdf_without_text() -> None:
    pages = [[f"Page {n} says the tide was {n} metres."] for n in range(1, 6)]
    text = extract(make_pdf(pages), content_type="application/pdf", url="x").text
    assert text.split("\n\n") == [f"Page {n} says the tide was {n} metres." for n in range(1, 6)]
    with pytest.raises(ExtractError, match="no text layer"):
        extract(make_pdf([[]]), content_type="application/pdf", url="x")
    with pytest.raises(ExtractError, match="PDF cannot be opened"):
        extract(b"%PDF-1.7\nnot really a pdf", content_type=None, url="x")


def test_plain_text_is_kept_as_is() -> None:
    page = extract(_read("plain.txt"), content_type="text/plain", url="x")
    assert page.content_type == "text/plain"
    assert page.title == "Field notes on the Glass Harbour lighthouse"
    assert page.text == _read("plain.txt").decode().strip()


def test_text_plain_mentioning_tags_stays_plain() -> None:
    body = b"How to write HTML: put <p>paragraphs</p> inside <body> and a <title> in <head>."
    page = extract(body, content_type="text/plain", url="x")
    assert page.content_type == "text/plain"
    assert page.text == body.decode()


def test_binary_junk_and_empty_content_raise() -> None:
    with pytest.raises(ExtractError, match="binary"):
        extract(_read("junk.bin"), content_type=None, url="local://wiki/junk")
    with pytest.raises(ExtractError, match="binary"):
        extract(_read("junk.bin"), content_type="image/png", url="x")
    with pytest.raises(ExtractError, match="empty"):
        extract(b"", content_type="text/html", url="x")
    with pytest.raises(ExtractError, match="empty"):
        extract(b" \n\t ", content_type="text/plain", url="x")


def test_page_trafilatura_rejects_falls_back_to_full_text() -> None:
    # All text sits in a <footer>: trafilatura returns nothing, but the page is not empty.
    html = (
        b"<html><head><title>Hours</title><script>var x = 1;</script></head><body>"
        b"<nav>Home About</nav><footer><p>The lighthouse opens daily at nine.</p>"
        b"<p>It closes at dusk.</p></footer></body></html>"
    )
    page = extract(html, content_type="text/html", url="x")
    assert page.title == "Hours"
    assert page.text == "The lighthouse opens daily at nine.\n\nIt closes at dusk."


def test_html_without_text_raises() -> None:
    with pytest.raises(ExtractError, match="no readable text"):
        extract(
            b"<html><body><script>var x = 1;</script></body></html>", content_type=None, url="x"
        )


def test_sniff_content_type() -> None:
    assert sniff_content_type(_read("report.pdf"), "text/plain") == "application/pdf"
    assert sniff_content_type(_read("article.html")) == "text/html"
    assert sniff_content_type(_read("plain.txt"), "application/octet-stream") == "text/plain"
    assert sniff_content_type(_read("junk.bin"), "text/html") == "application/octet-stream"


def test_huge_html_takes_the_resiliparse_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepresearcher.tools.extract as extract_module

    def no_trafilatura(*args: object, **kwargs: object) -> str:
        raise AssertionError("trafilatura must not run above the fast-path threshold")

    html = (FIXTURES / "article.html").read_bytes()
    monkeypatch.setattr(extract_module.trafilatura, "extract", no_trafilatura)
    page = extract(html, content_type="text/html", url="u", fast_path_chars=1000)
    assert page.content_type == "text/html"
    assert "Ray Lake" in page.text and page.title
    # Below the threshold trafilatura runs (and here fails: a failing parser is an ExtractError).
    with pytest.raises(ExtractError, match="AssertionError: trafilatura must not run"):
        extract(html, content_type="text/html", url="u", fast_path_chars=10_000_000)


# A page whose text is full of characters markdown gives a meaning to.
SYMBOLS_HTML = r"""<html><head><title>Symbols</title></head><body><article>
<h1>Notation on the page</h1>
<p>The capital [1] is named in my_file_name.txt, and 2*3=6 holds.</p>
<p># of items: 4; a `tick` or two; the tag reads &lt;b&gt; and x &gt; y; a~b.</p>
<p>A Windows path C:\temp\x and a literal \[ bracket stay as written, as does \(x\) and C:&#92;dir.</p>
<p>+ plus at the start, - minus, 1. not a list, and one look-alike ⧵ of a backslash.</p>
<h2>Table</h2>
<table><tr><th>Name</th><th>Value</th></tr><tr><td>a|b</td><td>x_y [2]</td></tr></table>
<p>The lighthouse keeper wrote these notes every evening for thirty years, and the notes
were kept in the harbour office until the office closed and they went to the museum.</p>
</article></body></html>"""
SYMBOL_LINES = [
    "The capital [1] is named in my_file_name.txt, and 2*3=6 holds.",
    "# of items: 4; a `tick` or two; the tag reads <b> and x > y; a~b.",
    r"A Windows path C:\temp\x and a literal \[ bracket stay as written, as does \(x\) and C:\dir.",
    "+ plus at the start, - minus, 1. not a list, and one look-alike ⧵ of a backslash.",
]


def test_markdown_output_carries_the_page_text_not_escapes() -> None:
    text = extract(SYMBOLS_HTML.encode(), content_type="text/html", url="x").text
    for line in SYMBOL_LINES:
        assert line in text.split("\n\n")
    # The markdown structure chosen on purpose stays: headings and table rows. A "|" inside a
    # cell keeps its backslash: without it the row would read as three cells.
    assert "# Notation on the page" in text and "## Table" in text
    assert "| Name | Value |" in text and r"| a\|b | x_y [2] |" in text
    assert "$" not in text  # no \(x\) turned into $x$ math


def test_fast_path_and_pdf_carry_the_page_text_too() -> None:
    fast = extract(SYMBOLS_HTML.encode(), content_type="text/html", url="x", fast_path_chars=100)
    for line in SYMBOL_LINES:
        assert line in fast.text
    assert "a|b" in fast.text and "x_y [2]" in fast.text
    pdf = extract(make_pdf([SYMBOL_LINES[:2], SYMBOL_LINES[2:3]]), content_type=None, url="x")
    assert pdf.text == "\n".join(SYMBOL_LINES[:2]) + "\n\n" + SYMBOL_LINES[2]
