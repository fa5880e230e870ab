"""Property-based fuzzing of ``POST /v1/pushes`` against a real API process (hypothesis).

Whatever JSON (or bytes) a caller sends, the API answers with JSON and never a 5xx: a 4xx
carries ``Error.Code``, a 202 a request id. Valid requests are accepted. The API under test
runs on its own Redis database with no worker, so accepted pushes just stay queued there.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.models import PushRequest
from devstack.redis import RedisServer

from ..stack import Api, ClientApi, settings_of

#: Bounded so that the whole file runs in well under 30 s.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no example database: every run draws afresh, nothing replayed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FIELDS = sorted(PushRequest.model_fields)
MISSING_URL = "http://127.0.0.1:9/does-not-exist.mp4"  # never fetched: no worker runs
_unique = itertools.count()
#: Request ids of every 202 the fuzzed API gave, to check the store against at the end.
accepted: set[str] = set()


@pytest.fixture(scope="module")
def fuzz_api(
    redis_server: RedisServer, service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """An API on Redis db 8 that no worker consumes."""
    url = redis_server.url.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    env = dict(service_env, ROOMCAST_REDIS_URL=url, ROOMCAST_LOG_LEVEL="WARNING")
    yield ClientApi(settings_of(env))


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity too: Python's json reads them
    | st.text(max_size=40)
    | st.sampled_from(["vod", "live", MISSING_URL, "rtmp://127.0.0.1:9/live/x", "ftp://x/y"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
#: Dicts that use the request's own field names (random values of random types) plus extras.
field_bodies = st.builds(
    lambda known, extra: {**extra, **known},
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)),
    st.dictionaries(st.text(max_size=12), json_values, max_size=3),
)


def valid_body(**changes: Any) -> dict[str, Any]:
    """A request the API must accept, each for a publisher of its own (no 409)."""
    body: dict[str, Any] = {
        "VideoSrc": MISSING_URL,
        "SdkAppId": 1400000000,
        "StrRoomId": "fuzz_room",
        "UserId": f"fuzz_{next(_unique)}",
        "UserSig": "sig-for-fuzz",
    }
    body.update(changes)
    return body


def assert_well_formed(status: int, body: Any) -> None:
    """Never a server error; an error has a code and message, an acceptance a request id."""
    assert status < 500, body
    assert status in {202, 400, 409, 413, 415}, (status, body)
    if status == 202:
        assert isinstance(body["RequestId"], str) and body["Message"]
    else:
        error = body["Error"]
        assert isinstance(error["Code"], str) and error["Code"]
        assert isinstance(error["Message"], str) and error["Message"]


def post(api: Api, body: Any) -> tuple[int, Any]:
    """POST ``body`` as JSON (NaN/Infinity allowed, as a careless client may send)."""
    raw = json.dumps(body, allow_nan=True).encode()
    answer = api.call("POST", "/v1/pushes", raw=raw)
    if answer.status == 202:
        accepted.add(answer.body["RequestId"])
    return answer.status, answer.body


@FUZZ
@given(body=field_bodies)
def test_any_object_using_the_field_names_gets_a_json_answer_never_a_5xx(
    fuzz_api: Api, body: dict[str, Any]
) -> None:
    status, answer = post(fuzz_api, body)
    assert_well_formed(status, answer)


@FUZZ
@given(body=json_values.filter(lambda v: not isinstance(v, dict)))
def test_any_json_that_is_not_an_object_is_refused_with_400(fuzz_api: Api, body: Any) -> None:
    status, answer = post(fuzz_api, body)
    assert status == 400, answer
    assert answer["Error"]["Code"] == "InvalidParameter"


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_sent_as_json_get_a_json_answer_never_a_5xx(fuzz_api: Api, raw: bytes) -> None:
    answer = fuzz_api.call("POST", "/v1/pushes", raw=raw)
    assert_well_formed(answer.status, answer.body)
    assert answer.status != 202  # too short to be a valid request


@FUZZ
@given(
    room=st.from_regex(r"\A[A-Za-z0-9_]{1,64}\Z") | st.none(),
    room_id=st.integers(min_value=1, max_value=4_294_967_295) | st.none(),
    app=st.integers(min_value=1, max_value=4_294_967_295),
    mode=st.sampled_from(["vod", "live"]),
    max_duration=st.none()
    | st.integers(min_value=1, max_value=7 * 86400)
    | st.floats(min_value=0.001, max_value=7 * 86400),
    extra=st.fixed_dictionaries({}, optional={"Redis": st.just(False), "Replace": st.booleans()}),
)
def test_every_valid_request_is_accepted(
    fuzz_api: Api,
    room: str | None,
    room_id: int | None,
    app: int,
    mode: str,
    max_duration: float | None,
    extra: dict[str, Any],
) -> None:
    body = valid_body(StrRoomId=room or "fuzz_room", SdkAppId=app, Mode=mode, **extra)
    if room_id is not None:
        body["RoomId"] = room_id
    if max_duration is not None and math.isfinite(max_duration):
        body["MaxDuration"] = max_duration
    status, answer = post(fuzz_api, body)
    assert status == 202, (body, answer)


def test_every_accepted_request_and_nothing_else_was_recorded(fuzz_api: Api) -> None:
    # Runs after the properties above (file order): none lost, none doubled, no refused
    # request left a record behind.
    listing = fuzz_api.call("GET", "/v1/pushes?Limit=1000").body
    recorded = {push["RequestId"] for push in listing["Pushes"]}
    assert recorded == accepted
    assert listing["Stats"]["queued"] == len(accepted) == sum(listing["Stats"].values())
