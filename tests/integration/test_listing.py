"""GET /v1/pushes's query: validated by one model (jobs.records.ListQuery), refused with a
400 naming the parameter; through Flask's test client on a Redis database of its own."""

from __future__ import annotations

import pytest
import redis

from devstack.redis import RedisServer

from ..stack import ClientApi, settings_of


@pytest.fixture(scope="module")
def api(redis_server: RedisServer, service_env: dict[str, str]) -> ClientApi:
    url = f"{redis_server.url.rsplit('/', 1)[0]}/14"
    redis.Redis.from_url(url).flushdb()
    return ClientApi(settings_of(dict(service_env, ROOMCAST_REDIS_URL=url)))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("Limit=0", "Limit"),
        ("Limit=1001", "Limit"),
        ("Limit=many", "Limit"),
        ("State=done", "State"),
        ("SdkAppId=-1", "SdkAppId"),
        ("Since=yesterday", "Since"),
        ("UserId=teacher", "SdkAppId"),
        ("Room=demo", "SdkAppId"),
    ],
)
def test_a_bad_list_query_answers_400_naming_the_parameter(
    api: ClientApi, query: str, field: str
) -> None:
    answer = api.call("GET", f"/v1/pushes?{query}")
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Code"] == "InvalidParameter"
    assert answer.body["Error"]["Field"] == field


def test_a_good_list_query_answers_the_pushes_and_the_count_in_each_state(
    api: ClientApi,
) -> None:
    answer = api.call("GET", "/v1/pushes?State=running&Limit=5&SdkAppId=1&Room=demo&Since=0")
    assert answer.status == 200, answer.body
    assert answer.body["Pushes"] == []
    assert set(answer.body["Stats"]) == {"queued", "running", "succeeded", "failed", "stopped"}


def test_an_unknown_query_parameter_is_refused_naming_it(api: ClientApi) -> None:
    answer = api.call("GET", "/v1/pushes?state=running")
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == "state"
