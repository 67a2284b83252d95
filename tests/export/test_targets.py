"""Export targets on real storage: a folder, Azurite (az://) and moto's S3 (s3://).

Each write is safe to repeat: a put replaces, an append given the size the file had before gives the
same bytes however often it runs, also after an attempt that stopped halfway. Bad credentials and
missing containers are clear errors that never show a key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scorewatch.errors import BadRequest, ConfigError
from scorewatch.export.targets import Target, normalize_url
from scorewatch.settings import Settings
from tests.export.servers import AZURITE_KEY, Azurite, MotoS3


def _container() -> str:
    return "c" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["file", "az", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "file":
        yield Target.open(str(tmp_path / "out"), Settings())
        return
    name = _container()
    if request.param == "az":
        azurite: Azurite = request.getfixturevalue("azurite")
        azurite.filesystem().mkdir(name)
        yield Target.open(f"az://{name}/exports", Settings(export_azure_connection_string=azurite.connection_string()))
        return
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    moto.filesystem().mkdir(name)
    yield Target.open(f"s3://{name}/exports", Settings(export_s3_endpoint_url=moto.endpoint,
                                                       export_s3_access_key_id="testing",
                                                       export_s3_secret_access_key="testing"))


def read(target: Target, name: str) -> bytes:
    return target.fs.cat_file(target.path(name))


def test_put_replaces_and_append_from_a_size_is_idempotent(target: Target) -> None:
    assert target.size("a/b.json") == 0
    target.put("a/one.blob", b"first")
    target.put("a/one.blob", b"second")  # a round written again: the same name, replaced
    assert read(target, "a/one.blob") == b"second"
    target.append("a/b.json", b"line1\n", 0)
    target.append("a/b.json", b"line2\n", 6)
    target.append("a/b.json", b"line2\n", 6)  # the same round again
    assert read(target, "a/b.json") == b"line1\nline2\n"
    assert target.size("a/b.json") == 12
    target.check()  # writes and removes its probe
    assert sorted(p.rsplit("/", 1)[-1] for p in target.fs.find(target.root)) == ["b.json", "one.blob"]


def test_an_append_cut_short_is_completed_not_repeated(target: Target) -> None:
    target.append("h/PT1H.json", b"a\n", 0)
    data = b"b1\nb2\nb3\n"
    if target.url.startswith("file://"):
        with open(target.path("h/PT1H.json"), "ab") as fh:  # a crash after part of the write
            fh.write(data[:4])
    elif target.url.startswith("az://"):
        with target.fs.open(target.path("h/PT1H.json"), "ab") as fh:  # an append block landed, then the crash
            fh.write(data[:4])
    else:
        target.put("h/PT1H.json", b"a\n" + data[:4])  # S3 replaces whole objects
    target.append("h/PT1H.json", data, 2)
    assert read(target, "h/PT1H.json") == b"a\n" + data


def test_a_local_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = Target.open(f"file://{tmp_path}/out", Settings())
    target.put("x/y.parquet", b"0123456789")
    assert (tmp_path / "out/x/y.parquet").read_bytes() == b"0123456789"
    assert [p.name for p in (tmp_path / "out/x").iterdir()] == ["y.parquet"]  # no temporary left


def test_wrong_azure_key_is_a_clear_error_without_the_key(azurite: Azurite) -> None:
    name = _container()
    azurite.filesystem().mkdir(name)
    wrong = AZURITE_KEY[:-8] + "AAAAAAA="
    target = Target.open(f"az://{name}/x", Settings(export_azure_connection_string=azurite.connection_string(wrong)))
    with pytest.raises(BadRequest) as info:
        target.check()
    message = str(info.value)
    assert "cannot write to az://" in message and "the credentials were rejected" in message
    assert wrong not in message and AZURITE_KEY not in message


def test_missing_container_or_bucket_is_a_clear_error(azurite: Azurite, moto_s3: MotoS3) -> None:
    az = Target.open("az://no-such-container/x", Settings(export_azure_connection_string=azurite.connection_string()))
    with pytest.raises(BadRequest, match="ContainerNotFound"):
        az.check()
    s3 = Target.open("s3://no-such-bucket/x", Settings(export_s3_endpoint_url=moto_s3.endpoint,
                                                      export_s3_access_key_id="testing",
                                                      export_s3_secret_access_key="testing"))
    with pytest.raises(BadRequest, match="cannot write to s3://no-such-bucket/x"):
        s3.check()


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(BadRequest, match="cannot write to file://"):
        Target.open(str(tmp_path / "a-file" / "out"), Settings()).check()


def test_urls() -> None:
    assert normalize_url("/tmp/x/../y") == "file:///tmp/y"
    assert normalize_url("file:///tmp/y/") == "file:///tmp/y"
    assert normalize_url("az://c/p/") == "az://c/p"
    for bad, message in (("gs://b/p", "unsupported export target"), ("s3://", "names no container or bucket")):
        with pytest.raises(BadRequest, match=message):
            normalize_url(bad)


def test_opening_without_any_credentials_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises((BadRequest, ConfigError), match="az://c/x"):
        Target.open("az://c/x", Settings()).check()
