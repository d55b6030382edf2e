"""The OpenAPI schema (docs/api.md "OpenAPI"): valid, complete, served as JSON or YAML to anyone, and the docs page
served from this server under a strict Content-Security-Policy."""

import json
import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from apertur.openapi import DOCS_CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.django_db


def test_the_schema_validates_with_no_warning(tmp_path):
    # Any warning fails: an operation without its answers, an unresolvable field, a component name twice.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert yaml.safe_load((tmp_path / "schema.yaml").read_text())["openapi"].startswith("3.")


def _api_routes(patterns, prefix: str = "") -> list[tuple[str, object]]:
    routes = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _api_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            routes.append(("/" + prefix + str(pattern.pattern), pattern.callback))
    return [(path, callback) for path, callback in routes if path.startswith("/api/v1/")]


def test_every_api_v1_route_and_method_is_in_the_schema(client):
    """A new endpoint without a schema fails here (docs/api.md "OpenAPI")."""
    paths = client.get("/api/schema/").json()["paths"]
    routes = _api_routes(get_resolver().url_patterns)
    assert len(routes) >= 30
    for route, callback in routes:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        assert path in paths, f"{path} is not in the OpenAPI schema"
        view_class = getattr(callback, "cls", None)
        assert view_class is not None, f"{path} is not served by a DRF view the schema can describe"
        methods = {method.lower() for method in view_class().allowed_methods} - {"head", "options"}
        assert set(paths[path]) == methods, f"{path}: the schema has {set(paths[path])}, the view {methods}"


def test_non_api_routes_are_not_in_the_schema(client):
    paths = client.get("/api/schema/").json()["paths"]
    assert all(path.startswith("/api/v1/") for path in paths)


def test_every_operation_names_its_errors_and_api_key_operations_their_security(client):
    schema = client.get("/api/schema/").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "429" in responses, f"{method} {path}"
            if "{" in path:
                assert "404" in responses, f"{method} {path}"
            if path.startswith("/api/v1/upload/"):
                assert operation.get("security", [{}])[0] == {}, f"{method} {path}: the phone's endpoints are public"
            else:
                assert {"apiKey": []} in operation["security"], f"{method} {path}"
                assert {"401", "403"} <= set(responses), f"{method} {path}"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_schema_is_json_by_default_and_yaml_on_request(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert json.loads(response.content)["info"]["title"] == "Apertur API"
    assert client.get("/api/schema/?format=json").json()["openapi"] == response.json()["openapi"]
    yaml_response = client.get("/api/schema/?format=yaml")
    assert yaml_response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(yaml_response.content)["paths"].keys() == response.json()["paths"].keys()


def test_the_schema_is_public_whatever_key_is_sent(client):
    response = client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer aptr_live_unknown")
    assert response.status_code == 200


def test_the_docs_page_loads_swagger_ui_from_this_server_under_a_strict_policy(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert page["Content-Security-Policy"] == DOCS_CONTENT_SECURITY_POLICY
    html = page.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/") and not source.startswith("//") for source in sources), sources
    assert "<style" not in html
    assert re.search(r"<script>(?!</script>)", html) is None, "no inline script"
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()
    for source in sources:
        if source.startswith("/static/"):
            assert client.get(source).status_code == 200, source
