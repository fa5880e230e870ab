"""RedisTls=true: the bookmark goes to a TLS-only Redis, verified against our own CA."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.redis import RedisServer, TlsFiles
from devstack.room import LocalRoom
from jobs.bookmarks import bookmark_key

from ..conftest import job_for
from ..stack import Api, start_api, start_worker, stop

APP = 1400000001
FINAL = {"succeeded", "failed", "stopped"}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(directory: Path) -> TlsFiles:
    """A throwaway CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=roomcast test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=directory)  # fmt: skip
    # Extensions that strict verifiers (Python 3.13's VERIFY_X509_STRICT) insist on.
    (directory / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2",
            "-extfile", "server.ext", cwd=directory)  # fmt: skip
    return TlsFiles(directory / "server.crt", directory / "server.key", directory / "ca.crt")


def redis_tls_support() -> str | None:
    """Why TLS cannot be tested here, or None when openssl and a TLS redis-server exist."""
    if shutil.which("openssl") is None:
        return "the openssl command is missing"
    try:
        subprocess.run(["openssl", "version"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`openssl version` failed: {exc}"
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    # A TLS build refuses this with "not listen anywhere"; a build without TLS rejects the
    # directive itself.
    probe = subprocess.run(
        [server, "--port", "0", "--tls-port", "0"], capture_output=True, text=True, timeout=10
    )
    if "FATAL CONFIG FILE ERROR" in probe.stdout + probe.stderr:
        return "this redis-server was built without TLS support (--tls-port is rejected)"
    return None


@pytest.fixture(scope="module")
def tls_redis(workdir: Path) -> Iterator[RedisServer]:
    reason = redis_tls_support()
    if reason is not None:
        pytest.skip(reason)
    tls = make_certs(workdir / "tls-certs")
    with RedisServer(workdir / "tls-redis", tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def tls_api(
    tls_redis: RedisServer,
    redis_server: RedisServer,
    service_env: dict[str, str],
    workdir: Path,
) -> Iterator[Api]:
    """A worker and API of their own (Redis db 4) that trust the test CA."""
    assert tls_redis.tls is not None
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/4",
        ROOMCAST_REDIS_TLS_CA_FILE=str(tls_redis.tls.ca),
    )
    worker = start_worker(env, workdir / "tls-worker.log", "tls")
    api_proc, base = start_api(env, workdir / "tls-api.log")
    yield Api(base)
    stop(api_proc)
    stop(worker)


def tls_job(room: LocalRoom, clip: str, room_name: str, port: int, **extra: object) -> dict:
    return job_for(
        room,
        clip,
        room_name,
        Redis=True,
        RedisHost="127.0.0.1",
        RedisPort=port,
        RedisTls=True,
        **extra,
    )


def test_a_tls_redis_named_in_the_request_holds_the_bookmark(
    tls_api: Api, tls_redis: RedisServer, room: LocalRoom, room_name: str, compat_clip: str
) -> None:
    job = tls_job(room, compat_clip, room_name, tls_redis.port, MaxDuration=3)
    final = tls_api.wait_state(tls_api.submit(**job), FINAL, timeout=20)
    assert final["State"] == "stopped" and "time limit" in final["Reason"], final
    assert final["Progress"]["ProgressSaving"] == "ok"
    assert tls_redis.tls is not None
    client = redis.Redis(port=tls_redis.port, ssl=True, ssl_ca_certs=str(tls_redis.tls.ca))
    key = bookmark_key(APP, room_name, room.media_url(compat_clip))
    assert 2.5 <= float(client.hget(key, "Position")) <= 4.0
    assert client.ttl(key) > 0


def test_tls_against_a_plain_redis_fails_the_job_naming_it(
    tls_api: Api, redis_server: RedisServer, room: LocalRoom, room_name: str, compat_clip: str
) -> None:
    job = tls_job(room, compat_clip, room_name, redis_server.port, RedisPassword="PW-tls-4471")
    final = tls_api.wait_state(tls_api.submit(**job), FINAL, timeout=20)
    assert final["State"] == "failed", final
    assert final["Error"]["Code"] == "ProgressStoreError"
    assert f"127.0.0.1:{redis_server.port}" in final["Error"]["Message"]
    assert "PW-tls-4471" not in str(final)


def test_a_certificate_from_an_unknown_ca_fails_the_job(
    api: Api, tls_redis: RedisServer, room: LocalRoom, room_name: str, compat_clip: str
) -> None:
    # The session's worker does not trust the test CA.
    job = tls_job(room, compat_clip, room_name, tls_redis.port)
    final = api.wait_state(api.submit(**job), FINAL, timeout=20)
    assert final["State"] == "failed", final
    assert final["Error"]["Code"] == "ProgressStoreError"
    message = final["Error"]["Message"]
    assert f"127.0.0.1:{tls_redis.port}" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate" in message, message


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"Redis": True, "RedisTls": True}, id="without_redishost"),
        pytest.param({"RedisTls": True}, id="without_redis"),
        pytest.param({"Redis": True, "RedisHost": "h", "RedisTls": "yes"}, id="as_string"),
    ],
)
def test_redistls_is_rejected_naming_it(
    api: Api, room: LocalRoom, fields: dict[str, object]
) -> None:
    body = job_for(room, "missing.mp4", "validation_room", **fields)
    answer = api.call("POST", "/v1/pushes", body)
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Code"] == "InvalidParameter"
    assert answer.body["Error"]["Field"] == "RedisTls", answer.body


def test_redistls_false_is_accepted_without_redis(api: Api, room: LocalRoom) -> None:
    body = job_for(room, "missing.mp4", "validation_room", RedisTls=False)
    assert api.call("POST", "/v1/pushes", body).status == 202
