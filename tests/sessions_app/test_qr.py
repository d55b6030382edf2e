"""GET /api/v1/upload-sessions/{id}/qr (docs/api.md "QR code"): the QR image of the session's upload URL, as a
scanner reads it."""

import io
import re
from xml.etree import ElementTree

import pytest
import segno
import zxingcpp
from apertur_sdk import Apertur
from PIL import Image

from sessions_app.qr import ERROR_CORRECTION
from tests.factories import make_persona
from tests.sessions_app.helpers import assert_validation_error, create_session

SVG_NAMESPACE = "{http://www.w3.org/2000/svg}"
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def get_qr(api_client, persona, session_id: str, **params):
    return api_client.get(f"/api/v1/upload-sessions/{session_id}/qr", params, **persona.auth)


def scanned(image: Image.Image) -> list[str]:
    """What a QR scanner reads in the image."""
    return [barcode.text for barcode in zxingcpp.read_barcodes(image)]


def opened(response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def modules_across(text: str, border_size: int) -> int:
    return segno.make_qr(text, error=ERROR_CORRECTION).symbol_size(border=border_size)[0]


def module_centre(image: Image.Image, column: int, row: int, across: int) -> tuple[int, int, int]:
    step = image.width / across
    return image.getpixel((int((column + 0.5) * step), int((row + 0.5) * step)))


def assert_colour_close(actual, expected, tolerance: int = 12) -> None:
    """JPEG is lossy: a module's centre keeps its colour only to within a few levels."""
    assert all(abs(a - b) <= tolerance for a, b in zip(actual, expected, strict=True)), (actual, expected)


@pytest.fixture
def session(api_client, owner) -> dict:
    return create_session(api_client, owner)


# --- what a phone scans -------------------------------------------------------------------------------------------


def test_default_qr_is_a_512_pixel_png_of_the_upload_url_cached_privately(api_client, owner, session, settings):
    response = get_qr(api_client, owner, session["id"])

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=300"
    assert "X-RateLimit-Limit" in response
    image = opened(response)
    assert image.format == "PNG"
    assert image.size == (512, 512)
    assert scanned(image) == [session["upload_url"]] == [f"{settings.APERTUR_PUBLIC_URL}/u/{session['id']}"]
    across = modules_across(session["upload_url"], 4)
    assert image.convert("RGB").getpixel((0, 0)) == WHITE
    assert module_centre(image.convert("RGB"), 4, 4, across) == BLACK  # the finder pattern's corner


def test_png_has_a_module_exactly_where_the_qr_matrix_has_one(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], size=300, borderSize=2)

    image = opened(response).convert("RGB")
    text = session["upload_url"]
    expected = [
        [BLACK if dark else WHITE for dark in row]
        for row in segno.make_qr(text, error=ERROR_CORRECTION).matrix_iter(border=2)
    ]
    across = len(expected)
    drawn = [[module_centre(image, column, row, across) for column in range(across)] for row in range(across)]
    assert drawn == expected


@pytest.mark.parametrize("size", [64, 333, 2048])
def test_size_is_the_image_width_and_height_in_pixels(api_client, owner, session, size):
    response = get_qr(api_client, owner, session["id"], size=size, borderSize=1)

    image = opened(response)
    assert image.size == (size, size)
    assert scanned(image) == [session["upload_url"]]


def test_colours_paint_modules_background_and_border(api_client, owner, session):
    response = get_qr(
        api_client, owner, session["id"], size=600, fg="123456", bg="#FFF8E0", borderColor="ccc", borderSize=6
    )

    image = opened(response).convert("RGB")
    across = modules_across(session["upload_url"], 6)
    assert image.getpixel((2, 2)) == (0xCC, 0xCC, 0xCC)  # quiet zone
    assert module_centre(image, 6, 6, across) == (0x12, 0x34, 0x56)  # finder pattern, dark
    assert module_centre(image, 7, 7, across) == (0xFF, 0xF8, 0xE0)  # finder pattern, light ring
    assert scanned(image) == [session["upload_url"]]


@pytest.mark.parametrize("spelling", ["00aa00", "#00AA00", "0a0", "#0a0"])
def test_every_hex_spelling_gives_the_same_colour(api_client, owner, session, spelling):
    response = get_qr(api_client, owner, session["id"], fg=spelling, borderSize=0)

    assert opened(response).convert("RGB").getpixel((0, 0)) == (0, 0xAA, 0)


def test_border_takes_the_background_colour_unless_given_its_own(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], bg="ffeecc")

    assert opened(response).convert("RGB").getpixel((0, 0)) == (0xFF, 0xEE, 0xCC)


def test_border_size_zero_starts_the_finder_pattern_at_the_image_corner(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], borderSize=0)

    image = opened(response).convert("RGB")
    assert image.getpixel((0, 0)) == BLACK
    assert scanned(image) == [session["upload_url"]]


def test_wider_border_shrinks_the_modules_not_the_image(api_client, owner, session):
    narrow = opened(get_qr(api_client, owner, session["id"], borderSize=1)).convert("RGB")
    wide = opened(get_qr(api_client, owner, session["id"], borderSize=20)).convert("RGB")

    def first_dark_pixel_on_the_diagonal(image: Image.Image) -> int:
        return next(offset for offset in range(image.width) if image.getpixel((offset, offset)) == BLACK)

    assert narrow.size == wide.size == (512, 512)
    assert first_dark_pixel_on_the_diagonal(narrow) < first_dark_pixel_on_the_diagonal(wide)
    assert scanned(wide) == [session["upload_url"]]


def test_jpeg_is_a_jpeg_of_the_upload_url_in_the_given_colours(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], format="jpeg", size=400, fg="003366", borderColor="eeeeee")

    assert response["Content-Type"] == "image/jpeg"
    image = opened(response)
    assert image.format == "JPEG"
    assert image.size == (400, 400)
    assert scanned(image) == [session["upload_url"]]
    across = modules_across(session["upload_url"], 4)
    assert_colour_close(module_centre(image, 4, 4, across), (0x00, 0x33, 0x66))
    assert_colour_close(image.getpixel((3, 3)), (0xEE, 0xEE, 0xEE))


def test_svg_is_well_formed_xml_sized_in_pixels_with_the_qr_modules(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], format="svg", size=300, fg="#a00", borderColor="0000ff")

    assert response["Content-Type"] == "image/svg+xml"
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{SVG_NAMESPACE}svg"
    assert (root.get("width"), root.get("height")) == ("300", "300")
    qr_code = segno.make_qr(session["upload_url"], error=ERROR_CORRECTION)
    across = qr_code.symbol_size(border=4)[0]
    assert root.get("viewBox") == f"0 0 {across} {across}"
    border, background = root.findall(f"{SVG_NAMESPACE}rect")
    assert (border.get("width"), border.get("fill")) == (str(across), "#0000ff")
    assert background.get("fill") == "#ffffff"
    path = root.find(f"{SVG_NAMESPACE}path")
    assert path.get("fill") == "#aa0000"
    drawn = {(int(x), int(y)) for x, y in re.findall(r"M(\d+) (\d+)H", path.get("d"))}
    expected = {
        (column, row)
        for row, modules in enumerate(qr_code.matrix_iter(border=4))
        for column, dark in enumerate(modules)
        if dark
    }
    assert drawn == expected


def test_rounded_style_rounds_the_outer_corners_and_still_scans(api_client, owner, session):
    square = opened(get_qr(api_client, owner, session["id"], borderSize=0, size=410)).convert("RGB")
    rounded = opened(get_qr(api_client, owner, session["id"], borderSize=0, size=410, style="rounded")).convert("RGB")

    assert square.getpixel((0, 0)) == BLACK
    assert rounded.getpixel((0, 0)) == WHITE  # the finder pattern's outer corner is cut round
    assert module_centre(rounded, 0, 0, modules_across(session["upload_url"], 0)) == BLACK
    assert scanned(rounded) == [session["upload_url"]]


def test_rounded_svg_draws_arcs(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], format="svg", style="rounded")

    path = ElementTree.fromstring(response.content).find(f"{SVG_NAMESPACE}path")
    assert "a.5 .5" in path.get("d")


def test_an_accept_header_for_the_image_type_is_honoured_not_refused(api_client, owner, session):
    response = get_qr(api_client, owner, session["id"], format="svg", HTTP_ACCEPT="image/svg+xml")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format", "gif"),
        ("format", "PNG"),
        ("size", "63"),
        ("size", "2049"),
        ("size", "large"),
        ("size", "1.5"),
        ("style", "dots"),
        ("fg", "12345"),
        ("fg", "black"),
        ("bg", "#12"),
        ("bg", "gggggg"),
        ("borderSize", "-1"),
        ("borderSize", "21"),
        ("borderSize", "wide"),
        ("borderColor", "#1234567"),
    ],
)
def test_an_invalid_parameter_is_refused_with_400_naming_it(api_client, owner, session, field, value):
    response = get_qr(api_client, owner, session["id"], **{field: value})

    assert_validation_error(response, field)


def test_another_projects_session_is_not_found(api_client, outsider, session):
    response = get_qr(api_client, outsider, session["id"])

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_another_projects_session_is_not_found_even_with_invalid_parameters(api_client, outsider, session):
    response = get_qr(api_client, outsider, session["id"], size="huge")

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")


def test_an_unknown_session_is_not_found(api_client, owner):
    response = get_qr(api_client, owner, "sess_01JZZZZZZZZZZZZZZZZZZZZZZZ")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_without_a_key_the_qr_is_refused_with_401(api_client, session):
    response = api_client.get(f"/api/v1/upload-sessions/{session['id']}/qr")

    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILED"


# --- the official client ------------------------------------------------------------------------------------------


def test_official_client_downloads_the_qr_as_svg_and_png(live_server_process):
    persona = make_persona("qr-sdk-user")
    with Apertur(api_key=persona.plain_key, base_url=live_server_process.url) as sdk:
        session = sdk.sessions.create(long_polling=True)

        svg = sdk.sessions.qr(session["id"], format="svg")
        png = sdk.sessions.qr(session["id"], size=256, border_size=2, fg="#222")

    root = ElementTree.fromstring(svg)
    assert root.tag == f"{SVG_NAMESPACE}svg"
    assert (root.get("width"), root.get("height")) == ("512", "512")
    image = Image.open(io.BytesIO(png))
    assert image.size == (256, 256)
    assert scanned(image) == [session["upload_url"]] == [f"{live_server_process.url}/u/{session['id']}"]
