"""The dashboard's per-type destination forms, generated from each type's config model — the one the API validates
with (destinations/backends/*.py) — so a field added to a model shows up on its form. What the models cannot say
lives here: a label and a line of help per field, taken from docs/api.md "Destinations" and docs/destinations.md.

A submitted form becomes the API's `config` object (create) or its merge patch (edit): the same service checks it
and its messages come back per field. Secrets never go back into a page: an empty secret field on edit keeps the
stored value, as an omitted secret does in a PATCH."""

import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AnyUrl
from pydantic import BaseModel as PydanticModel

from destinations.backends import BACKENDS, backend_class
from destinations.backends.base import BackendConfig
from destinations.backends.oauth import OAuthBackend

PATHS_HELP = (
    "Variables: {project_id}, {session_id}, {image_id}, {index}, {filename}, {name}, {ext}, {date}, {year}, "
    "{month}, {day}, {timestamp}, {tag:KEY}. Empty: {session_id}/{index}_{image_id}.{ext}."
)

# type → (name, one line on the type chooser).
TYPES: dict[str, tuple[str, str]] = {
    "webhook": ("Webhook", "An HTTP POST of each photo to your URL, signed with a shared secret."),
    "s3": ("Amazon S3", "A bucket of Amazon S3 or any S3-compatible store (MinIO, Wasabi, R2 …)."),
    "azure_blob": ("Azure Blob Storage", "A container of an Azure Storage account."),
    "ftp": ("FTP / FTPS / SFTP", "A folder on an FTP server (plain or TLS) or an SSH server's SFTP."),
    "webdav": ("WebDAV", "A WebDAV folder: Nextcloud, ownCloud, Apache, nginx …"),
    "google_drive": ("Google Drive", "A folder of a Google Drive, connected with your Google account."),
    "dropbox": ("Dropbox", "A folder of a Dropbox, connected with your Dropbox account."),
    "onedrive": ("OneDrive", "OneDrive or a SharePoint library, connected with your Microsoft account."),
    "box": ("Box", "A Box folder, connected with your Box account."),
}

# type → the letters of its mark in the list (no images: a coloured letter-mark per type).
MARKS: dict[str, str] = {
    "webhook": "WH",
    "s3": "S3",
    "azure_blob": "AZ",
    "ftp": "FTP",
    "webdav": "DAV",
    "google_drive": "GD",
    "dropbox": "DB",
    "onedrive": "OD",
    "box": "BX",
}

LABELS: dict[str, str] = {
    "url": "URL",
    "secret": "Signing secret",
    "format": "Body format",
    "customHeaders": "Extra headers",
    "endpoint": "Endpoint URL",
    "accessKey": "Access key ID",
    "secretKey": "Secret access key",
    "pathTemplate": "Path template",
    "connectionString": "Connection string",
    "remotePath": "Remote folder",
    "privateKey": "Private key",
    "hostKeyFingerprint": "Host key fingerprint",
    "folderId": "Folder ID",
    "folderPath": "Folder path",
    "driveId": "Drive ID",
}

# (type, field) first, then field alone.
HELP: dict[Any, str] = {
    ("webhook", "url"): "The http:// or https:// URL each photo is POSTed to.",
    ("webhook", "secret"): (
        "At least 8 characters. Each request is signed with it (X-Apertur-Signature, an HMAC-SHA256 of the body); "
        "a whsec_<base64> secret is read as a Standard Webhooks secret."
    ),
    ("webhook", "format"): (
        "multipart: a form with the file and its metadata; json_base64: JSON with the image in base64; binary: the "
        "image as the body, metadata in headers."
    ),
    ("webhook", "customHeaders"): (
        "One header a line, as Name: value. Added to every request; the headers Apertur sets cannot be overridden."
    ),
    ("s3", "endpoint"): "The URL of an S3-compatible service (path-style addressing). Empty: Amazon S3.",
    ("s3", "region"): "Empty: us-east-1.",
    ("s3", "bucket"): "The bucket's name; it must exist.",
    ("s3", "accessKey"): "The access key ID of a user allowed to put objects into the bucket.",
    ("s3", "secretKey"): "The secret that goes with the access key ID.",
    ("s3", "pathTemplate"): "The object key. " + PATHS_HELP,
    ("s3", "customHeaders"): (
        "One header a line, as Name: value: Cache-Control, Content-Disposition, Content-Language, "
        "x-amz-storage-class, x-amz-server-side-encryption(-aws-kms-key-id), x-amz-acl, x-amz-tagging or any "
        "x-amz-meta-*."
    ),
    ("azure_blob", "connectionString"): (
        "The account's connection string (the portal's Access keys page: DefaultEndpointsProtocol=https;"
        "AccountName=…;AccountKey=…), or BlobEndpoint=…;SharedAccessSignature=… with a SAS allowing create and write."
    ),
    ("azure_blob", "container"): (
        "An existing container: 3 to 63 lowercase letters, digits and single hyphens (or $root, $web)."
    ),
    ("azure_blob", "pathTemplate"): "The blob name. " + PATHS_HELP,
    ("ftp", "protocol"): "ftp: in clear; ftps: explicit TLS (AUTH TLS); sftp: an SSH server's SFTP.",
    ("ftp", "host"): "Host name or IP address, without scheme, port or path.",
    ("ftp", "port"): "Empty: 21, or 22 with sftp.",
    ("ftp", "username"): "The account photos are uploaded as.",
    ("ftp", "password"): "Required, except that with sftp a private key may replace it.",
    ("ftp", "remotePath"): "Folder below the login directory. Empty: the login directory itself.",
    ("ftp", "privateKey"): (
        "sftp only: an RSA, ECDSA or Ed25519 private key in OpenSSH (BEGIN OPENSSH PRIVATE KEY) or PEM form; with "
        "one, the login is by the key."
    ),
    ("ftp", "passphrase"): "sftp only: the private key's passphrase, when it has one.",
    ("ftp", "hostKeyFingerprint"): (
        "sftp only: the server's host key as ssh-keygen -lf prints it, SHA256:<base64>. Empty: the key of the first "
        "successful connection is pinned."
    ),
    ("webdav", "url"): (
        "http:// or https:// URL of a folder on the server; for Nextcloud and ownCloud "
        "https://cloud.example.com/remote.php/dav/files/<user id>/. No credentials, query or fragment."
    ),
    ("webdav", "username"): "Without a colon.",
    ("webdav", "password"): "For Nextcloud and ownCloud, an app password (Personal settings → Security).",
    ("webdav", "remotePath"): "Folder below the URL. Empty: the URL's folder itself.",
    ("google_drive", "folderId"): (
        "The id at the end of the folder's URL (https://drive.google.com/drive/folders/<id>). Empty: root (My Drive)."
    ),
    ("google_drive", "pathTemplate"): "The path below the folder; its folders are created as needed. " + PATHS_HELP,
    ("dropbox", "folderPath"): (
        "The folder photos go to. Empty: /Apps/Apertur. For a Dropbox app with App folder access, paths start at "
        "the app's own folder (/ is that folder)."
    ),
    ("onedrive", "driveId"): (
        "The drive to write to (a SharePoint library or a drive shared with you), as Graph gives it. Empty: your "
        "own OneDrive."
    ),
    ("onedrive", "folderPath"): "Folder below the drive's root. Empty: /Apertur.",
    ("box", "folderId"): (
        "The digits at the end of the folder's URL (https://app.box.com/folder/123). Empty: 0 (All Files)."
    ),
    "pathTemplate": PATHS_HELP,
}

# The inputs a field can have; `widget` names the template's branch.
TEXT, URL, PASSWORD, SECRET_TEXT, NUMBER, CHECKBOX, SELECT, HEADERS = (
    "text",
    "url",
    "password",
    "secret_textarea",
    "number",
    "checkbox",
    "select",
    "headers",
)
SECRET_TEXTAREAS = {"privateKey"}
MAX_HEADERS = 50


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    widget: str
    required: bool
    help: str
    choices: tuple[str, ...] = ()
    default: Any = None

    @property
    def secret(self) -> bool:
        return self.widget in (PASSWORD, SECRET_TEXT)


def type_name(kind: str) -> str:
    return TYPES.get(kind, (kind.replace("_", " ").title(), ""))[0]


def type_mark(kind: str) -> str:
    return MARKS.get(kind, kind[:2].upper())


def is_oauth(kind: str) -> bool:
    return issubclass(backend_class(kind), OAuthBackend)


def type_choices() -> list[dict[str, Any]]:
    """Every registered type for the chooser: its name, its line, whether it is connected by OAuth."""
    return [
        {"type": kind, "name": type_name(kind), "line": TYPES.get(kind, ("", ""))[1], "oauth": is_oauth(kind)}
        for kind in sorted(BACKENDS, key=type_name)
    ]


def _label(name: str) -> str:
    return LABELS.get(name) or re.sub(r"(?<!^)([A-Z])", r" \1", name).capitalize()


def _unwrapped(annotation: Any) -> Any:
    """`Annotated[X, …]` → X; `X | None` → X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            others = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(others) != 1:
                return str
            annotation = others[0]
        else:
            return annotation


def _widget(name: str, annotation: Any, secret: bool) -> tuple[str, tuple[str, ...]]:
    if secret:
        return (SECRET_TEXT if name in SECRET_TEXTAREAS else PASSWORD), ()
    inner = _unwrapped(annotation)
    if get_origin(inner) is Literal:
        return SELECT, tuple(str(choice) for choice in get_args(inner))
    if inner is bool:
        return CHECKBOX, ()
    if inner is int:
        return NUMBER, ()
    if get_origin(inner) is dict:
        return HEADERS, ()
    if isinstance(inner, type) and issubclass(inner, AnyUrl):
        return URL, ()
    return TEXT, ()


def form_fields(kind: str) -> list[FormField]:
    """The fields of a type's form, in the config model's order; the ones only the server writes (OAuth tokens)
    and nested settings objects left out."""
    config_model: type[BackendConfig] = backend_class(kind).Config
    secret_names = config_model.secret_field_names()
    server_only = config_model.server_only_field_names()
    fields = []
    for name, info in config_model.model_fields.items():
        inner = _unwrapped(info.annotation)
        if name in server_only or (isinstance(inner, type) and issubclass(inner, PydanticModel)):
            continue
        widget, choices = _widget(name, info.annotation, name in secret_names)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields.append(
            FormField(
                name=name,
                label=_label(name),
                widget=widget,
                required=info.is_required(),
                help=HELP.get((kind, name)) or HELP.get(name, ""),
                choices=choices,
                default=default,
            )
        )
    return fields


def _headers(text: str) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    problems = []
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_HEADERS:
        return {}, [f"at most {MAX_HEADERS} headers"]
    for number, line in enumerate(lines, start=1):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            problems.append(f"line {number}: write each header as Name: value")
            continue
        if name.strip().lower() in (known.lower() for known in headers):
            # A second line of the same header (in any case) would replace the first without a word.
            problems.append(f"line {number}: {name.strip()} is given twice")
            continue
        headers[name.strip()] = value.strip()
    return headers, problems


def config_from_form(kind: str, form: Any, *, patch: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A submitted form as the API's `config` (create) or config merge patch (edit, `patch=True`), with the
    problems found before the service sees it (a header line without a colon, a NUL character).

    Create: an empty field is left out, so its default applies (or the model says it is required). Edit: an empty
    secret is left out (the stored one stays) unless its "remove" box is ticked; any other empty field is `null`,
    which a merge patch reads as "back to the default"."""
    config: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for field in form_fields(kind):
        if field.widget == CHECKBOX:
            config[field.name] = form.get(field.name) == "on"
            continue
        raw = form.get(field.name, "")
        if "\x00" in raw:
            problems[field.name] = ["may not contain NUL characters"]
            continue
        value: Any = raw if field.widget == SECRET_TEXT else raw.strip()
        if field.widget == HEADERS and value:
            value, refused = _headers(value)
            if refused:
                problems[field.name] = refused
                continue
        if value not in ("", {}):
            config[field.name] = value
        elif patch and field.secret:
            if form.get(f"remove-{field.name}") == "on":
                config[field.name] = None
        elif patch:
            config[field.name] = None
    return config, problems


def form_values(kind: str, shown_config: dict[str, Any]) -> dict[str, str]:
    """What an edit form shows: the plain fields' stored values as text; secrets never."""
    values = {}
    for field in form_fields(kind):
        value = shown_config.get(field.name)
        if field.secret or value is None:
            continue
        if field.widget == HEADERS and isinstance(value, dict):
            values[field.name] = "\n".join(f"{name}: {item}" for name, item in value.items())
        elif field.widget == CHECKBOX:
            values[field.name] = "on" if value else ""
        else:
            values[field.name] = str(value)
    return values


def errors_by_field(fields: dict[str, list[str]] | None, message: str, *, kind: str) -> dict[str, list[str]]:
    """The API's 400 `fields` (`config.url`, `config.customHeaders.X-Foo`, `name`, `type`) by form field; what
    belongs to no field of the form (a check across fields, reported on `config`) under `form`."""
    known = {field.name for field in form_fields(kind)} | {"name"}
    errors: dict[str, list[str]] = {}
    for key, messages in (fields or {"form": [message]}).items():
        parts = key.split(".")
        name = parts[1] if parts[0] == "config" and len(parts) > 1 else parts[0]
        inner = f"{'.'.join(parts[2:])}: " if parts[0] == "config" and len(parts) > 2 else ""
        if name not in known:
            name, inner = "form", "" if key in ("form", "config") else f"{key}: "
        errors.setdefault(name, []).extend(f"{inner}{text}" for text in messages)
    return errors
