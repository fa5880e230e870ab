"""The API describes itself: GET /openapi.json, generated from the models that run it, and the
browsable GET /docs page, whose every file is served by the API itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from openapi_spec_validator import validate

from api.models import PushRequest
from api.player import COMMANDS
from api.responses import Accepted, ErrorAnswer, PushList, PushStatus
from devstack.room import LocalRoom

from ..conftest import job_for
from ..pages import Page, assert_assets_served_locally, fetch
from ..stack import Api, start_api, stop

#: The request fields of Tencent Cloud's push-to-room template, which the API keeps as they are.
TEMPLATE_FIELDS = {
    "VideoSrc", "SdkAppId", "RoomId", "StrRoomId", "Mode", "UserId", "UserSig",
    "Redis", "RedisHost", "RedisPort", "RedisPassword",
}  # fmt: skip
FINAL = {"succeeded", "failed", "stopped"}


def document(api: Api) -> dict[str, Any]:
    answer = api.call("GET", "/openapi.json")
    assert answer.status == 200, answer.body
    return dict(answer.body)


# --- the document -----------------------------------------------------------------------------


def test_openapi_json_is_a_valid_openapi_3_document(api: Api) -> None:
    doc = document(api)
    assert doc["openapi"].startswith("3.")
    validate(doc)  # raises on anything OpenAPI 3 does not allow


def test_the_push_request_schema_is_the_model_that_validates_requests(api: Api) -> None:
    schema = document(api)["components"]["schemas"]["PushRequest"]
    assert TEMPLATE_FIELDS <= set(schema["properties"])
    assert set(schema["properties"]) == set(PushRequest.model_fields)
    assert set(schema["required"]) == {"VideoSrc", "SdkAppId", "UserId"}
    assert schema["additionalProperties"] is False  # unknown fields are refused
    # The limits a client needs to build a valid request are in the schema.
    room = schema["properties"]["StrRoomId"]["anyOf"][0]
    assert room["maxLength"] == 64 and room["pattern"] == "^[A-Za-z0-9_]+$"
    assert schema["properties"]["Mode"]["enum"] == ["vod", "live"]


def test_every_endpoint_and_method_the_app_serves_is_documented(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import create_app  # the app's own routes, not a list kept by hand

    monkeypatch.setattr("jobs.logs.configure_logging", lambda *args: None)
    app = create_app()
    paths = document(api)["paths"]
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<request_id>", "{RequestId}").replace("<target_id>", "{TargetId}")
        expanded = (
            [path.replace("<command>", c) for c in COMMANDS] if "<command>" in path else [path]
        )
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served |= {(p, method.lower()) for p in expanded}
    documented = {(path, method) for path, item in paths.items() for method in item}
    assert served == documented


def test_each_player_command_documents_the_body_its_model_validates(api: Api) -> None:
    doc = document(api)
    for name, model in COMMANDS.items():
        operation = doc["paths"][f"/v1/pushes/{{RequestId}}/{name}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert set(doc["components"]["schemas"][model.__name__].get("properties", {})) == set(
            model.model_fields
        )
    assert doc["components"]["schemas"]["Switch"]["required"] == ["VideoSrc"]


def test_real_answers_match_the_documented_response_schemas(
    api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    accepted = api.call("POST", "/v1/pushes", job_for(room, short_clip, room_name))
    assert accepted.status == 202, accepted.body
    Accepted.model_validate(accepted.body)
    failing = api.submit(**job_for(room, "missing.mp4", room_name, UserId="other_user"))
    request_id = accepted.body["RequestId"]
    finals = [api.wait_state(rid, FINAL, timeout=30) for rid in (request_id, failing)]
    assert [f["State"] for f in finals] == ["succeeded", "failed"], finals
    for status in finals:  # the top level forbids undescribed fields
        PushStatus.model_validate(status)
    assert finals[0]["Progress"]["Bytes"] > 0
    PushList.model_validate(api.call("GET", "/v1/pushes?Limit=20").body)
    ErrorAnswer.model_validate(api.call("GET", "/v1/pushes/nope").body)
    ErrorAnswer.model_validate(api.call("POST", "/v1/pushes", {"SdkAppId": 0}).body)


# --- the docs page ----------------------------------------------------------------------------


def test_docs_page_is_html_whose_every_asset_is_served_by_the_api(api: Api) -> None:
    status, headers, body = fetch(api.base + "/docs")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    # The browser itself is told to load nothing from elsewhere.
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    page = Page(body.decode())
    assert any(r.endswith("swagger-ui-bundle.js") for r in page.scripts), page.refs
    assert_assets_served_locally(api.base + "/docs", page)
    _, _, init = fetch(urljoin(api.base + "/docs", "static/docs.js"))
    assert b'url: "openapi.json"' in init and b"validatorUrl: null" in init


# --- with API keys ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_api(service_env: dict[str, str], workdir: Path) -> Iterator[Api]:
    """An API whose calls need a bearer key (no worker needed: nothing is pushed)."""
    env = dict(service_env, ROOMCAST_API_KEYS="docs-key-123")
    proc, base = start_api(env, workdir / "openapi_keyed_api.log")
    yield Api(base)
    stop(proc)


def test_with_api_keys_the_docs_stay_public_and_the_document_asks_for_the_key(
    keyed_api: Api,
) -> None:
    assert keyed_api.call("GET", "/v1/pushes").status == 401
    for path in ("/docs", "/openapi.json", "/static/docs.js", "/healthz"):
        assert fetch(keyed_api.base + path)[0] == 200, path
    doc = document(keyed_api)
    validate(doc)
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/v1/pushes"]["post"]  # the key is needed there
