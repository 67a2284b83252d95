"""Shared state (documents): the workspace's files and a ClickHouse database keep the same promises:
edits from many writers at once lose none, a reader learns of a change, one replica holds a lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scorewatch.apps import Registry
from scorewatch.documents import UNCHANGED, CachedDocument, ClickHouseDocuments, FileDocuments, lease, release
from scorewatch.errors import BadRequest
from tests.backends import chdb_store, have_chdb

KINDS = ["files", "clickhouse"]


@pytest.fixture(params=KINDS)
def documents(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "files":
        yield FileDocuments(tmp_path)
        return
    if not have_chdb():
        pytest.skip("chdb is not installed")
    store = chdb_store("documents")
    yield ClickHouseDocuments(store.client, poll_s=0)
    store.close()


def test_read_write_delete_and_keys(documents: Any) -> None:
    assert documents.read("apps", {"apps": []}) == {"apps": []}
    documents.write("apps", {"apps": [1]})
    documents.write("exports/r1/checkpoint", {"position": 5})
    documents.write("exports/r1/checkpoint-1", {"position": 7})
    documents.write("exports/r2/status", {"x": 1})
    assert documents.read("apps") == {"apps": [1]}
    assert documents.keys("exports/r1") == ["exports/r1/checkpoint", "exports/r1/checkpoint-1"]
    documents.delete("exports/r1")
    assert documents.keys("exports/r1") == [] and documents.read("exports/r1/checkpoint") is None
    assert documents.read("exports/r2/status") == {"x": 1}


def test_values_are_read_at_once_and_matched_part_by_part(documents: Any) -> None:
    documents.write("deployments/a/deployment", {"n": 1})
    documents.write("deployments/a/keys", {"k": 1})
    documents.write("deployments/b/deployment", {"n": 2})
    documents.write("deployments/b/app/1/deployment", {"n": 3})  # deeper: not a record of the kind
    documents.write("deployments-other/c/deployment", {"n": 4})  # another prefix
    assert documents.values("deployments", "*/deployment") == {"deployments/a/deployment": {"n": 1},
                                                               "deployments/b/deployment": {"n": 2}}
    assert set(documents.values("deployments")) == {"deployments/a/deployment", "deployments/a/keys",
                                                    "deployments/b/deployment", "deployments/b/app/1/deployment"}
    documents.delete("deployments/a")
    assert documents.values("deployments", "a/*") == {} and documents.values("nothing") == {}


def test_edits_from_many_writers_at_once_lose_none(documents: Any) -> None:
    def add(n: int) -> None:
        for _ in range(n):
            documents.edit("counter", lambda value: {"n": value["n"] + 1}, {"n": 0})

    threads = [threading.Thread(target=add, args=(15,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert documents.read("counter") == {"n": 60}
    assert documents.edit("counter", lambda value: UNCHANGED) == {"n": 60}


def test_a_reader_learns_of_a_change(documents: Any) -> None:
    before = documents.stamp("apps")
    assert documents.stamp("apps") == before
    time.sleep(0.01)  # a file's time stamp moves
    documents.write("apps", {"apps": [2]})
    assert documents.stamp("apps") != before


def test_one_holder_of_a_lease_at_a_time(documents: Any) -> None:
    if not documents.shared:
        assert lease(documents, "export", "a", 30) and lease(documents, "export", "b", 30)  # one hub: always
        return
    assert lease(documents, "export", "a", 30)
    assert not lease(documents, "export", "b", 30)
    assert lease(documents, "export", "a", 30)  # renewed
    assert lease(documents, "export", "c", 0.01) is False
    documents.write("leases/export", {"holder": "a", "until": time.time() - 1})  # a stopped renewing
    assert lease(documents, "export", "b", 30) and not lease(documents, "export", "a", 30)
    release(documents, "export", "a")  # not a's to give up
    assert not lease(documents, "export", "a", 30)
    release(documents, "export", "b")  # b stops: a takes it at once
    assert lease(documents, "export", "a", 30) and not lease(documents, "export", "b", 30)


def test_applications_live_in_the_documents(documents: Any) -> None:
    hub_view, cli_view = Registry(documents), Registry(documents)
    app, key = cli_view.create("shop", retention_days=30)
    with pytest.raises(BadRequest, match="already exists"):
        cli_view.create("shop")
    assert hub_view.by_instrumentation_key(app.instrumentation_key) == app  # picked up on an unknown key
    hub_view.authenticate(app.app_id, key)
    cli_view.set_retention("shop", 7)
    second = cli_view.add_api_key("shop")
    hub_view.refresh()
    assert hub_view.get("shop").retention_days == 7
    hub_view.authenticate(app.app_id, second)


def test_a_cached_document_is_read_again_only_when_it_changed(documents: Any) -> None:
    loaded: list[Any] = []
    cached = CachedDocument(documents, "cached", loaded.append)
    documents.write("cached", {"v": 1})
    assert cached.refresh() and loaded == [{"v": 1}]
    assert not cached.refresh() and loaded == [{"v": 1}]  # unchanged: not read
    documents.write("cached", {"v": 2, "longer": True})  # another writer
    documents.forget("cached")
    assert cached.refresh() and loaded[-1] == {"v": 2, "longer": True}
    cached.reread()  # after this process wrote it: read whatever the stamp says
    assert len(loaded) == 3 and loaded[-1] == {"v": 2, "longer": True}
