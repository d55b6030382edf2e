"""Path templates (docs/api.md "Paths"): validation at create time, deterministic rendering at delivery time."""

import re
import string
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from destinations.backends.base import StagedImage

DEFAULT_PATH_TEMPLATE = "{session_id}/{index}_{image_id}.{ext}"
VARIABLES = frozenset(
    {
        "project_id",
        "session_id",
        "image_id",
        "index",
        "filename",
        "name",
        "ext",
        "date",
        "year",
        "month",
        "day",
        "timestamp",
        "tag",
    }
)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class PathTemplateError(ValueError):
    pass


def _fields(template: str) -> list[tuple[str, str | None, str]]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise PathTemplateError(f"malformed template: {error}") from error
    for _, field, _, conversion in parsed:
        if conversion:
            raise PathTemplateError(f"{{{field}!{conversion}}}: variables take no conversion")
    return [(literal, field, spec or "") for literal, field, spec, _ in parsed]


def validate_template(template: str) -> str:
    """Return the template, or raise PathTemplateError naming the first unknown variable."""
    if not template.strip():
        raise PathTemplateError("the template is empty")
    for _, field, spec in _fields(template):
        if field is None:
            continue
        if field not in VARIABLES:
            raise PathTemplateError(f"unknown variable {{{field}}}")
        if field == "tag" and not spec:
            raise PathTemplateError("{tag:KEY} needs a key")
        if field != "tag" and spec:
            raise PathTemplateError(f"{{{field}}} takes no format")
    return template


def tag_value(tags: list[str], key: str) -> str:
    prefix = f"{key}:"
    return next((tag[len(prefix) :] for tag in tags if tag.startswith(prefix)), "")


def render_path(template: str, *, variables: dict[str, str], tags: list[str]) -> str:
    """Render and normalise: no `..`/`.` segments, no empty segments, no leading `/`, no control characters.

    A file name that renders empty (`{tag:album}` without such a tag, a template ending in `/`) becomes
    `{image_id}.{ext}` in the folder rendered (docs/api.md "Paths"): every image still has a name of its own."""
    parts = []
    for literal, field, spec in _fields(template):
        parts.append(literal)
        if field is not None:
            parts.append(tag_value(tags, spec) if field == "tag" else variables[field])
    folder, _, name = "".join(parts).replace("\\", "/").rpartition("/")
    if not normalise_path(name):
        name = f"{variables['image_id']}.{variables['ext']}"
    return normalise_path(f"{folder}/{name}")


def normalise_path(path: str) -> str:
    path = _CONTROL_CHARACTERS.sub("", path).replace("\\", "/")
    segments = [segment.strip() for segment in path.split("/")]
    return "/".join(segment for segment in segments if segment not in {"", ".", ".."})


def template_variables(
    *,
    project_id: str,
    session_id: str,
    image_id: str,
    index: int,
    filename: str,
    extension: str,
    uploaded_at: datetime,
) -> dict[str, str]:
    name = filename.rsplit(".", 1)[0] if "." in filename else filename
    uploaded_at = uploaded_at.astimezone(UTC)  # docs/api.md "Paths": dates are UTC whatever zone the value carries
    return {
        "project_id": project_id,
        "session_id": session_id,
        "image_id": image_id,
        "index": str(index),
        "filename": filename,
        "name": name,
        "ext": extension,
        "date": uploaded_at.strftime("%Y-%m-%d"),
        "year": uploaded_at.strftime("%Y"),
        "month": uploaded_at.strftime("%m"),
        "day": uploaded_at.strftime("%d"),
        "timestamp": str(int(uploaded_at.timestamp())),
    }


def image_path(template: str, image: "StagedImage") -> str:
    """Where `image` goes under `template`: deterministic, so a retried delivery overwrites."""
    variables = template_variables(
        project_id=image.project_id,
        session_id=image.session_id,
        image_id=image.image_id,
        index=image.index,
        filename=image.filename,
        extension=image.extension,
        uploaded_at=image.uploaded_at,
    )
    return render_path(template, variables=variables, tags=image.tags)
