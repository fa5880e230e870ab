"""GET /metrics: the whole service in Prometheus text format, counted by the workers in Redis."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.room import LocalRoom

from .conftest import job_for
from .stack import Api, start_api, stop

FINAL = {"succeeded", "failed", "stopped"}
STATES = {"queued", "running", "succeeded", "failed", "stopped"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str, key: str | None = None) -> tuple[int, str, Samples]:
    """GET /metrics: status, content type, and every sample by (name, sorted labels)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(base + "/metrics", headers=headers), timeout=30
        ) as resp:
            status, kind, text = resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return status, kind, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is not there (a counter that never moved)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_pushes_by_state_errors_by_code_and_what_was_sent(
    api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    status, kind, before = scrape(api.base)
    assert status == 200 and kind.startswith("text/plain; version=")

    failed = api.submit(**job_for(room, "missing.mp4", room_name, UserId="metrics_fail"))
    succeeded = api.submit(**job_for(room, short_clip, room_name, UserId="metrics_ok"))
    assert api.wait_state(failed, FINAL, timeout=30)["Error"]["Code"] == "SourceNotFound"
    final = api.wait_state(succeeded, FINAL, timeout=30)
    assert final["State"] == "succeeded", final
    _, _, after = scrape(api.base)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("roomcast_push_errors_total", code="SourceNotFound") >= 1
    assert grew("roomcast_pushes_ended_total", state="failed") >= 1
    assert grew("roomcast_pushes_ended_total", state="succeeded") >= 1
    assert grew("roomcast_pushes_created_total") >= 2
    # Every byte and frame the finished push reported is in the service's totals.
    assert grew("roomcast_sent_bytes_total") >= final["Progress"]["Bytes"] > 0
    assert grew("roomcast_sent_frames_total") >= final["Progress"]["Frames"] > 0
    # Records by state: one gauge per state, with the pushes just finished among them.
    assert {dict(labels)["state"] for name, labels in after if name == "roomcast_pushes"} == STATES
    assert value(after, "roomcast_pushes", state="succeeded") >= 1
    assert value(after, "roomcast_pushes", state="failed") >= 1
    assert ("roomcast_pushes_active", ()) in after
    assert ("roomcast_pacing_lag_max_seconds", ()) in after


def test_a_running_push_is_active_until_it_is_stopped(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    _, _, during = scrape(api.base)
    assert value(during, "roomcast_pushes_active") >= 1
    assert value(during, "roomcast_pushes", state="running") >= 1
    stopped_before = value(during, "roomcast_pushes_ended_total", state="stopped")
    assert api.call("POST", f"/v1/pushes/{rid}/stop").status in (200, 202)
    api.wait_state(rid, FINAL, timeout=15)
    _, _, after = scrape(api.base)
    assert value(after, "roomcast_pushes_ended_total", state="stopped") >= stopped_before + 1


# --- who may scrape ---------------------------------------------------------------------------

KEY = "metrics-key-123"


@pytest.fixture(scope="module")
def keyed_apis(service_env: dict[str, str], workdir: Path) -> Iterator[dict[str, str]]:
    """Two APIs with a key configured: /metrics public (the default), and not."""
    bases, procs = {}, []
    for public in ("true", "false"):
        env = dict(service_env, ROOMCAST_API_KEYS=KEY, ROOMCAST_METRICS_PUBLIC=public)
        proc, bases[public] = start_api(env, workdir / f"metrics_public_{public}_api.log")
        procs.append(proc)
    yield bases
    for proc in procs:
        stop(proc)


def test_metrics_are_public_by_default_even_where_calls_need_a_key(
    keyed_apis: dict[str, str],
) -> None:
    assert Api(keyed_apis["true"]).call("GET", "/v1/pushes").status == 401
    assert scrape(keyed_apis["true"])[0] == 200


def test_metrics_public_false_asks_scrapers_for_the_key(keyed_apis: dict[str, str]) -> None:
    assert scrape(keyed_apis["false"])[0] == 401
    assert scrape(keyed_apis["false"], key="wrong")[0] == 401
    assert scrape(keyed_apis["false"], key=KEY)[0] == 200
