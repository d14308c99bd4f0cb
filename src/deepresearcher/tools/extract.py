"""Turn fetched bytes (HTML, PDF or plain text) into a title and clean main text.

Bytes are decoded here, not by trafilatura: an undeclared cp1252 page handed to trafilatura as
bytes comes out garbled (measured, see shared/design/NOTES.md, "Extraction"). HTML goes to
trafilatura (main text as markdown, tables kept, without the backslash escapes its markdown adds);
pages over ``fast_path_chars`` go to resiliparse, about 40x faster on huge pages; all visible text
is the last resort. Untrusted bytes are extracted under a deadline in a worker process
(:mod:`deepresearcher.tools.extract_worker`); this module is the pure function it runs.
"""

from __future__ import annotations

import codecs
import re
import threading
import unicodedata
from dataclasses import dataclass

import charset_normalizer
import lxml.html
import trafilatura
from lxml import etree

from deepresearcher.errors import ExtractError
from deepresearcher.tools.chunking import normalize_text

HTML = "text/html"
# Above this many characters of HTML, resiliparse extracts instead of trafilatura (which took
# 4.9 s on a 14 MB page here, against 0.11 s).
FAST_PATH_CHARS = 1_000_000
PDF = "application/pdf"
TEXT = "text/plain"

_HTML_MIME = {"text/html", "application/xhtml+xml"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its BOM starts with UTF-16 LE's
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# WHATWG Encoding: browsers read these labels as windows-1252, and so do the pages written for them
# (curly quotes and dashes in 0x80-0x9F are cp1252, not C1 controls).
_LABEL_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "windows-1252": "cp1252",
}
# charset_normalizer cannot tell Latin-script code pages apart on short pages (it read a French
# cp1252 page as cp1257 here); cp1252 is the web's default for undeclared pages, so it wins there.
_LATIN_CODEPAGES = {
    "cp1250",
    "cp1252",
    "cp1257",
    "latin_1",
    "iso8859_2",
    "iso8859_4",
    "iso8859_9",
    "iso8859_10",
    "iso8859_13",
    "iso8859_14",
    "iso8859_15",
    "iso8859_16",
    "mac_latin2",
    "mac_roman",
    "mac_iceland",
    "mac_turkish",
    "cp850",
    "cp858",
    "cp437",
}
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.I)
_HTML_START = re.compile(
    r"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S
)
_HTML_TAG = re.compile(
    r"<(?:html|head|body|title|meta|div|p|table|script|style|h[1-6])\b[^>]*>", re.I
)
_CONTROL_OK = {"\t", "\n", "\r", "\f", "\v"}
# Elements whose text is never page content; the fallback extractor drops them.
_NON_CONTENT = ("script", "style", "noscript", "template", "nav", "svg", "head", "iframe", "object")
_BLOCK_TAGS = (
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "br", "hr", "header", "footer",
    "aside", "figure", "figcaption", "td", "th",
)  # fmt: skip
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
# trafilatura's markdown backslash-escapes every character CommonMark could read as syntax
# ("capital \[1\]", "my\_file"), and turns "\(x\)" and "\[x\]" into $-math. The page's own
# backslashes are swapped for a stand-in the page does not contain before trafilatura sees it, so
# every backslash in its output is one it added: those are dropped, then the stand-in is swapped
# back. "\|" stays: inside a table cell it is what keeps a "|" of the text from splitting the row.
_BACKSLASH = re.compile(r"\\|&#0*92;|&#[xX]0*5[cC];|&bsol;")
_STAND_INS = ("\u29f5", "\u2216", "\ufe68", "\uff3c")  # reverse-solidus look-alikes
_MARKDOWN_ESCAPE = re.compile(r"\\([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{}~])")

# pdfium is not thread-safe, and extract() may run in several threads of one process.
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExtractedPage:
    """The readable content of one fetched resource."""

    title: str
    text: str
    content_type: str


def extract(
    content: bytes,
    *,
    content_type: str | None,
    url: str,
    fast_path_chars: int = FAST_PATH_CHARS,
) -> ExtractedPage:
    """Extract the title and main text of ``content`` (see :func:`_extract`); a parser that
    fails on a broken page (pdfium on a corrupt page, lxml, resiliparse) is an
    :class:`ExtractError` too, never an exception that would end a whole batch of episodes."""
    try:
        return _extract(content, content_type=content_type, url=url,
                        fast_path_chars=fast_path_chars)
    except ExtractError:
        raise
    except Exception as exc:  # a third-party parser's own error type
        raise ExtractError(f"{url}: the page cannot be read ({type(exc).__name__}: {exc})",
                           hint="the page is broken or in a form the extractors do not handle"
                           ) from exc


def _extract(
    content: bytes,
    *,
    content_type: str | None,
    url: str,
    fast_path_chars: int = FAST_PATH_CHARS,
) -> ExtractedPage:
    """Extract the title and main text of ``content``.

    ``content_type`` is the declared ``Content-Type`` header (charset included), or ``None``; the
    real type is sniffed from the bytes when the header is missing or wrong (a PDF is a PDF
    whatever the header says). HTML longer than ``fast_path_chars`` characters is extracted with
    resiliparse instead of trafilatura. Raises :class:`ExtractError` for empty or binary content
    and for pages without any text.
    """
    if not content.strip():
        raise ExtractError(f"{url}: the content is empty", hint="the page has no bytes to read")
    mime, declared_charset = _parse_content_type(content_type)
    if _is_pdf(content):
        return _extract_pdf(content, url=url)
    text = decode(content, declared_charset=declared_charset)
    if _looks_binary(text):
        raise ExtractError(
            f"{url}: the content is binary ({mime or 'no content type'}), not text, HTML or PDF",
            hint="only HTML, PDF and plain-text pages can be read",
        )
    if mime in _HTML_MIME or _looks_like_html(text, declared_mime=mime):
        return _extract_html(text, url=url, fast_path_chars=fast_path_chars)
    body = normalize_text(text)
    if not body:
        raise ExtractError(f"{url}: the text is empty")
    return ExtractedPage(title=_first_line(body), text=body, content_type=TEXT)


def sniff_content_type(content: bytes, content_type: str | None = None) -> str:
    """The type :func:`extract` will treat ``content`` as: ``text/html``, ``application/pdf``,
    ``text/plain``, or ``application/octet-stream`` for binary content."""
    if _is_pdf(content):
        return PDF
    mime, charset = _parse_content_type(content_type)
    text = decode(content, declared_charset=charset)
    if _looks_binary(text):
        return "application/octet-stream"
    if mime in _HTML_MIME or _looks_like_html(text, declared_mime=mime):
        return HTML
    return TEXT


# --- decoding ---------------------------------------------------------------------------------


def decode(content: bytes, *, declared_charset: str | None = None) -> str:
    """Decode bytes to text: BOM, then the declared charset, then ``<meta>``/XML, then detection.

    A byte-order mark wins over any declaration (as in browsers: it cannot be there by accident).
    A declared charset that does not decode the bytes is skipped, since servers often declare
    UTF-8 for legacy pages; if nothing decodes cleanly, the first declared charset is used with
    replacement characters.
    """
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return content.decode(encoding, errors="replace")
    declared = [c for c in (declared_charset, _sniff_meta_charset(content)) if c]
    for label in declared:
        codec = _codec(label)
        if codec is None:
            continue
        try:
            return content.decode(codec)
        except UnicodeDecodeError:
            continue
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    detected = _detect(content)
    if detected is not None:
        return detected
    fallback = next((c for c in map(_codec, declared) if c is not None), "cp1252")
    return content.decode(fallback, errors="replace")


def _codec(label: str) -> str | None:
    """The Python codec for a charset label, or ``None`` when unknown."""
    label = label.strip().strip("\"'").lower()
    label = _LABEL_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # A <meta> saying UTF-16 in a byte stream we could read as ASCII is a copy-paste error.
    if name.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return name


def _sniff_meta_charset(content: bytes) -> str | None:
    head = content[:4096]
    match = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    return match.group(1).decode("ascii") if match else None


def _detect(content: bytes) -> str | None:
    """Decode with the guess of resiliparse's detector (fast, and right on the undeclared cp1252
    fixture), else charset_normalizer's, preferring cp1252 among Latin-script guesses."""
    from resiliparse.parse.encoding import detect_encoding

    guess = _codec(detect_encoding(content[:65536]) or "")
    if guess is not None:
        if guess in _LATIN_CODEPAGES:
            guess = "cp1252"
        try:
            return content.decode(guess)
        except UnicodeDecodeError:
            pass
    best = charset_normalizer.from_bytes(content).best()
    if best is None:
        return None
    if best.encoding in _LATIN_CODEPAGES:
        try:
            return content.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return str(best)


def _parse_content_type(content_type: str | None) -> tuple[str | None, str | None]:
    """``"text/html; charset=UTF-8"`` -> ``("text/html", "UTF-8")``."""
    if not content_type:
        return None, None
    mime, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return mime.strip().lower() or None, charset


# --- sniffing ---------------------------------------------------------------------------------


def _is_pdf(content: bytes) -> bool:
    # PDF readers accept the header anywhere in the first KiB (some servers prepend junk).
    return b"%PDF-" in content[:1024]


def _looks_binary(text: str) -> bool:
    """Decoded text with many control or replacement characters was never text."""
    sample = text[:8192]
    if not sample:
        return False
    bad = sum(
        1
        for ch in sample
        if ch == "\ufffd" or (ch not in _CONTROL_OK and unicodedata.category(ch) == "Cc")
    )
    return bad / len(sample) > 0.05


def _looks_like_html(text: str, *, declared_mime: str | None) -> bool:
    head = text[:4096]
    if _HTML_START.match(head):
        return True
    # A server saying text/plain is believed unless the text starts like a document (above).
    if declared_mime == TEXT:
        return False
    return len(_HTML_TAG.findall(head)) >= 2


# --- HTML -------------------------------------------------------------------------------------


def _extract_html(html: str, *, url: str, fast_path_chars: int = FAST_PATH_CHARS) -> ExtractedPage:
    if len(html) > fast_path_chars:
        fast = _extract_html_fast(html)
        if fast is not None:
            return fast
    tree = _parse_html(html)
    title = _html_title(tree) if tree is not None else ""
    stand_in = next((c for c in _STAND_INS if c not in html), None)
    main = trafilatura.extract(
        _BACKSLASH.sub(stand_in, html) if stand_in else html,
        url=url,
        output_format="markdown",
        include_tables=True,
        include_comments=False,
        include_links=False,
        include_images=False,
        favor_precision=True,  # best F1 on the article benchmark (NOTES.md)
        deduplicate=False,
    )
    text = normalize_text(_unescape_markdown(main or "", stand_in))
    if not text and tree is not None:
        # trafilatura returns nothing on pages it judges to have no article (lists, short pages);
        # the agent is better served by all visible text than by an empty page.
        text = _full_text(tree)
    if not text:
        raise ExtractError(f"{url}: the HTML page has no readable text")
    return ExtractedPage(title=title, text=text, content_type=HTML)


def _unescape_markdown(markdown: str, stand_in: str | None) -> str:
    """trafilatura's markdown without the escapes it added, and with the page's backslashes.

    Without a stand-in (a page holding all four look-alikes) every escape is still dropped; a
    backslash of the page before punctuation is then lost with them.
    """
    text = _MARKDOWN_ESCAPE.sub(r"\1", markdown)
    return text.replace(stand_in, "\\") if stand_in else text


def _extract_html_fast(html: str) -> ExtractedPage | None:
    """resiliparse's main-content text of a huge page; ``None`` if it finds no text."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    text = normalize_text(
        extract_plain_text(tree, main_content=True, alt_texts=False, comments=False,
                           list_bullets=True)
    )
    if not text:
        return None
    title = _SPACES.sub(" ", (tree.title or "").replace("\n", " ")).strip()
    return ExtractedPage(title=title or _first_line(text), text=text, content_type=HTML)


def _parse_html(html: str) -> lxml.html.HtmlElement | None:
    # lxml refuses str input that carries an XML encoding declaration.
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html, count=1)
    try:
        return lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return None


def _html_title(tree: lxml.html.HtmlElement) -> str:
    """og:title (usually without the site suffix), else ``<title>``, else the first ``<h1>``."""
    for xpath in (
        '//meta[@property="og:title"]/@content',
        '//meta[@name="twitter:title"]/@content',
        "//title//text()",
        "//h1//text()",
    ):
        found = " ".join(str(v) for v in tree.xpath(xpath)).strip()
        if found:
            return _SPACES.sub(" ", found.replace("\n", " "))
    return ""


def _full_text(tree: lxml.html.HtmlElement) -> str:
    """All visible text of the body, one block element per paragraph."""
    for element in list(tree.iter(*_NON_CONTENT)):
        if element.getparent() is not None:
            element.drop_tree()  # keeps the tail, which is the parent's text after the element
    for element in tree.iter(*_BLOCK_TAGS):
        element.tail = "\n\n" + (element.tail or "")
        if element.tag != "br":
            element.text = "\n\n" + (element.text or "")
    body = tree.find("body")
    raw = (body if body is not None else tree).text_content()
    lines = (_SPACES.sub(" ", line).strip() for line in raw.split("\n"))
    return normalize_text("\n".join(lines))


# --- PDF and text -----------------------------------------------------------------------------


def _extract_pdf(content: bytes, *, url: str) -> ExtractedPage:
    import pypdfium2 as pdfium  # imported here: only PDF pages pay for loading pdfium

    pages: list[str] = []
    title = ""
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(content)
        except pdfium.PdfiumError as exc:
            raise ExtractError(f"{url}: the PDF cannot be opened ({exc})") from exc
        try:
            title = (pdf.get_metadata_dict().get("Title") or "").strip()
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                try:
                    pages.append(textpage.get_text_range())
                finally:
                    textpage.close()
                    page.close()
        finally:
            pdf.close()
    text = normalize_text("\n\n".join(normalize_text(p) for p in pages if p.strip()))
    if not text:
        raise ExtractError(
            f"{url}: the PDF has no text layer",
            hint="scanned PDFs need OCR, which is not supported",
        )
    return ExtractedPage(title=title or _first_line(text), text=text, content_type=PDF)


def _first_line(text: str, limit: int = 200) -> str:
    line = text.lstrip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0]
