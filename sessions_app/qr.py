"""QR images of an upload session's URL (docs/api.md "QR code"): segno computes the module matrix, this module
draws it.

segno's own writers scale by whole modules, so they cannot hit an exact pixel size, and they have no rounded
modules; one small drawing routine per output kind (Pillow for PNG/JPEG, plain SVG) gives both, the same way
for every format.
"""

import io
import re
from dataclasses import dataclass

import segno
from PIL import Image, ImageDraw

CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml", "jpeg": "image/jpeg"}
STYLES = ("square", "rounded")
_HEX_COLOUR = re.compile(r"#?(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})")
# Level M survives ~15% damage (a smudged print, a glare spot); segno raises it further when the text still fits
# the same symbol version, so the image does not grow for it. https://segno.readthedocs.io/en/latest/api.html
ERROR_CORRECTION = "m"
JPEG_QUALITY = 95
_SQUARE_CORNERS = (False, False, False, False)


@dataclass(frozen=True)
class QrOptions:
    """How to draw the code. Colours take any spelling `hex_colour` accepts; `border_color` None means `background`."""

    format: str = "png"
    size: int = 512
    style: str = "square"
    foreground: str = "000000"
    background: str = "ffffff"
    border_modules: int = 4
    border_color: str | None = None


def hex_colour(value: str) -> str:
    """`RRGGBB`, `#RRGGBB`, `RGB` or `#RGB` as `#rrggbb`; anything else is a ValueError."""
    if not _HEX_COLOUR.fullmatch(value):
        raise ValueError(f"not a hex colour: {value!r}")
    digits = value.removeprefix("#").lower()
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return f"#{digits}"


@dataclass(frozen=True)
class _Drawing:
    """The options resolved: the matrix without its quiet zone, colours as `#rrggbb`."""

    matrix: tuple[bytearray, ...]
    size: int
    rounded: bool
    foreground: str
    background: str
    border_modules: int
    border_color: str

    @property
    def modules_across(self) -> int:
        return len(self.matrix) + 2 * self.border_modules

    def dark_modules(self):
        """(column, row, corners) of every dark module, column and row counted from the image's edge.

        `corners` says which corners to round: (top left, top right, bottom right, bottom left). Rounded style
        rounds a corner only where neither module beside it is dark, so runs of modules read as one smooth
        shape and the finder patterns stay solid squares for scanners.
        """
        across = len(self.matrix)

        def dark(row: int, column: int) -> bool:
            return 0 <= row < across and 0 <= column < across and bool(self.matrix[row][column])

        for row, modules in enumerate(self.matrix):
            for column, is_dark in enumerate(modules):
                if not is_dark:
                    continue
                corners = _SQUARE_CORNERS
                if self.rounded:
                    up, down = dark(row - 1, column), dark(row + 1, column)
                    left, right = dark(row, column - 1), dark(row, column + 1)
                    corners = (not (up or left), not (up or right), not (down or right), not (down or left))
                yield column + self.border_modules, row + self.border_modules, corners


def render_qr(text: str, options: QrOptions) -> tuple[bytes, str]:
    """The QR code of `text` as image bytes and their Content-Type."""
    drawing = _Drawing(
        matrix=segno.make_qr(text, error=ERROR_CORRECTION).matrix,
        size=options.size,
        rounded=options.style == "rounded",
        foreground=hex_colour(options.foreground),
        background=hex_colour(options.background),
        border_modules=options.border_modules,
        border_color=hex_colour(options.border_color or options.background),
    )
    if options.format == "svg":
        return _svg(drawing), CONTENT_TYPES["svg"]
    return _raster(drawing, options.format), CONTENT_TYPES[options.format]


def _raster(drawing: _Drawing, image_format: str) -> bytes:
    across = drawing.modules_across
    # Module boundaries in whole pixels: modules differ by at most one pixel and the image is exactly `size` wide.
    edges = [round(index * drawing.size / across) for index in range(across + 1)]
    image = Image.new("RGB", (drawing.size, drawing.size), drawing.border_color)
    draw = ImageDraw.Draw(image)
    symbol_start, symbol_end = edges[drawing.border_modules], edges[across - drawing.border_modules] - 1
    draw.rectangle((symbol_start, symbol_start, symbol_end, symbol_end), fill=drawing.background)
    for column, row, corners in drawing.dark_modules():
        left, top, right, bottom = edges[column], edges[row], edges[column + 1] - 1, edges[row + 1] - 1
        if right < left or bottom < top:
            continue  # narrower than a pixel at this size: nothing to draw
        if not any(corners):
            draw.rectangle((left, top, right, bottom), fill=drawing.foreground)
            continue
        # A circle, then a quarter square over every corner that stays square. (Pillow's rounded_rectangle
        # with some corners rounded fails when the radius is half the side, which is the radius wanted here.)
        draw.ellipse((left, top, right, bottom), fill=drawing.foreground)
        middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
        quarters = ((left, top, middle_x, middle_y), (middle_x, top, right, middle_y))
        quarters += ((middle_x, middle_y, right, bottom), (left, middle_y, middle_x, bottom))
        for rounded, quarter in zip(corners, quarters, strict=True):
            if not rounded:
                draw.rectangle(quarter, fill=drawing.foreground)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        # No chroma subsampling: it would bleed a coloured foreground into the modules around it.
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _svg(drawing: _Drawing) -> bytes:
    """In module units (the viewBox), scaled to `size` pixels by the width and height attributes."""
    across, inner, border = drawing.modules_across, len(drawing.matrix), drawing.border_modules
    path = "".join(_svg_module(column, row, corners) for column, row, corners in drawing.dark_modules())
    # Square modules get crisp edges, or renderers anti-alias the seams between neighbours into faint lines.
    rendering = "" if drawing.rounded else ' shape-rendering="crispEdges"'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{drawing.size}" height="{drawing.size}" '
        f'viewBox="0 0 {across} {across}">'
        f'<rect width="{across}" height="{across}" fill="{drawing.border_color}"/>'
        f'<rect x="{border}" y="{border}" width="{inner}" height="{inner}" fill="{drawing.background}"/>'
        f'<path fill="{drawing.foreground}"{rendering} d="{path}"/></svg>\n'
    ).encode()


def _svg_module(column: int, row: int, corners: tuple[bool, bool, bool, bool]) -> str:
    """One module as a path, clockwise from the top left; a rounded corner is a quarter circle of radius ½."""
    top_left, top_right, bottom_right, bottom_left = (0.5 if rounded else 0 for rounded in corners)
    path = f"M{column + top_left} {row}H{column + 1 - top_right}"
    if top_right:
        path += "a.5 .5 0 0 1 .5 .5"
    path += f"V{row + 1 - bottom_right}"
    if bottom_right:
        path += "a.5 .5 0 0 1 -.5 .5"
    path += f"H{column + bottom_left}"
    if bottom_left:
        path += "a.5 .5 0 0 1 -.5 -.5"
    path += f"V{row + top_left}"
    if top_left:
        path += "a.5 .5 0 0 1 .5 -.5"
    return path + "z"
