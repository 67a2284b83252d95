"""The export service of hub replicas on one shared store: one runs the export at a time, and one that
stops hands it on at once."""

from __future__ import annotations

import pytest

from scorewatch.documents import ClickHouseDocuments
from scorewatch.export.service import ExportService
from scorewatch.settings import Settings
from tests.backends import chdb_store, have_chdb


@pytest.mark.skipif(not have_chdb(), reason="chdb is not installed")
def test_a_replica_that_stops_hands_the_export_on_at_once() -> None:
    store = chdb_store("export_lease")
    documents = ClickHouseDocuments(store.client, poll_s=0)
    first, second = (ExportService(store, documents, Settings.from_env()) for _ in range(2))
    assert first.lead() and not second.lead()  # one runs the export
    first.stop()
    assert not first.leading
    assert second.lead()  # now, not once the 30 s lease runs out
    assert not first.lead()
