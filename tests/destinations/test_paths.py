"""Path templates (docs/api.md "Paths"): every variable, the default, strict validation, normalisation, determinism."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from destinations.paths import (
    DEFAULT_PATH_TEMPLATE,
    PathTemplateError,
    normalise_path,
    render_path,
    template_variables,
    validate_template,
)

UPLOADED_AT = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)


def render(template: str, *, tags: list[str] | None = None, **overrides) -> str:
    values = {
        "project_id": "5f0c8a4e-2d7b-4c3e-9a1f-0e6b8d2c4a11",
        "session_id": "sess_01JSESSION",
        "image_id": "img_01JIMAGE",
        "index": 7,
        "filename": "beach day.jpeg",
        "extension": "jpg",
        "uploaded_at": UPLOADED_AT,
        **overrides,
    }
    return render_path(validate_template(template), variables=template_variables(**values), tags=tags or [])


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("project_id", "5f0c8a4e-2d7b-4c3e-9a1f-0e6b8d2c4a11"),
        ("session_id", "sess_01JSESSION"),
        ("image_id", "img_01JIMAGE"),
        ("index", "7"),
        ("filename", "beach day.jpeg"),
        ("name", "beach day"),
        ("ext", "jpg"),
        ("date", "2026-11-28"),
        ("year", "2026"),
        ("month", "11"),
        ("day", "28"),
        ("timestamp", "1795858215"),
    ],
)
def test_every_variable_renders(variable, expected):
    assert render(f"x/{{{variable}}}") == f"x/{expected}"


def test_tag_variable_renders_the_value_of_the_first_matching_tag_or_nothing():
    tags = ["client:Acme", "order:A-17", "order:B-2", "rush"]

    assert render("{tag:order}/{tag:client}/{tag:missing}/{tag:rush}/f", tags=tags) == "A-17/Acme/f"


def test_the_default_template_is_session_then_index_and_image_id():
    assert DEFAULT_PATH_TEMPLATE == "{session_id}/{index}_{image_id}.{ext}"
    assert render(DEFAULT_PATH_TEMPLATE) == "sess_01JSESSION/7_img_01JIMAGE.jpg"


def test_a_name_without_extension_keeps_its_whole_name():
    assert render("{name}.{ext}", filename="scan") == "scan.jpg"


def test_dates_are_utc_whatever_zone_the_upload_time_carries():
    just_after_midnight_in_paris = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))

    assert render("{date}/{year}/{month}/{day}", uploaded_at=just_after_midnight_in_paris) == "2026-02-28/2026/02/28"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{session_id}/{nope}", "unknown variable {nope}"),
        ("{SESSION_ID}", "unknown variable {SESSION_ID}"),
        ("{}", "unknown variable {}"),
        ("{image_id.upper}", "unknown variable"),
        ("{tag}", "{tag:KEY} needs a key"),
        ("{index:03d}", "{index} takes no format"),
        ("{name!r}", "take no conversion"),
        ("{session_id", "malformed template"),
        ("   ", "the template is empty"),
    ],
)
def test_templates_with_unknown_or_malformed_variables_are_refused(template, message):
    with pytest.raises(PathTemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        validate_template(template)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("../../etc/passwd", "etc/passwd"),
        ("a/../b/./c", "a/b/c"),
        ("/leading/slash.jpg", "leading/slash.jpg"),
        ("//double//slashes//", "double/slashes"),
        ("back\\slash\\..\\x.jpg", "back/slash/x.jpg"),
        ("con\x00trol\x1f/chars\x7f\n.jpg", "control/chars.jpg"),
        (" spaced / segment .jpg", "spaced/segment .jpg"),
    ],
)
def test_rendered_paths_are_normalised(raw, normalised):
    assert normalise_path(raw) == normalised


def test_values_cannot_escape_the_template_with_dot_dot_or_a_leading_slash():
    path = render("/{tag:folder}/{filename}", tags=["folder:../../../root"], filename="..")

    assert path == "root/img_01JIMAGE.jpg"  # ".." is no file name: the image's id names it


@pytest.mark.parametrize(
    ("template", "tags", "expected"),
    [
        ("{tag:album}", [], "img_01JIMAGE.jpg"),
        ("photos/{tag:album}", [], "photos/img_01JIMAGE.jpg"),
        ("{tag:album}/", ["album:Summer"], "Summer/img_01JIMAGE.jpg"),
        ("{tag:album}/{tag:name}", ["album:Summer"], "Summer/img_01JIMAGE.jpg"),
        ("{tag:album}/{name}.{ext}", [], "beach day.jpg"),
    ],
)
def test_a_file_name_that_renders_empty_becomes_the_image_id_in_its_folder(template, tags, expected):
    assert render(template, tags=tags) == expected


def test_rendering_is_deterministic():
    template = "{project_id}/{date}/{session_id}/{index}_{image_id}_{name}.{ext}/{tag:order}"
    tags = ["order:A-17"]

    assert render(template, tags=tags) == render(template, tags=list(tags))
    assert render(template, tags=tags) != render(template, tags=tags, index=8)
