"""Argilla's OpenSearch engine, minus the three painless-script updates osmem cannot run.

osmem-server (an in-memory OpenSearch stand-in for tests) answers "update with script is not supported by osmem".
Argilla uses scripts in exactly three places; each is replaced by read-modify-write of the document's _source.
That is not atomic like a script update: fine for a test server, not for production (use real OpenSearch/ES there).
Runs inside the argilla-server venv only (never imported by the project or by pytest).
"""

from argilla_server.constants import SEARCH_ENGINE_OPENSEARCH
from argilla_server.search_engine.base import SearchEngine
from argilla_server.search_engine.commons import es_index_name_for_dataset
from argilla_server.search_engine.opensearch import OpenSearchEngine


class OsmemOpenSearchEngine(OpenSearchEngine):
    async def _source(self, index_name: str, id: str) -> dict:
        doc = await self.client.get(index=index_name, id=id)
        return doc.get("_source") or {}

    async def _replace_responses(self, response, keep_new: bool) -> None:
        record = response.record
        index_name = es_index_name_for_dataset(record.dataset)
        es_response = self._map_record_response_to_es(response)
        source = await self._source(index_name, str(record.id))
        responses = [r for r in (source.get("responses") or []) if r.get("id") != es_response["id"]]
        if keep_new:
            responses.append(es_response)
        await self._update_document_request(index_name, id=str(record.id), body={"doc": {"responses": responses}})

    async def update_record_response(self, response) -> None:
        await self._replace_responses(response, keep_new=True)

    async def delete_record_response(self, response) -> None:
        await self._replace_responses(response, keep_new=False)

    async def delete_record_suggestion(self, suggestion) -> None:
        # A partial "doc" update merges objects, so a removed key needs the whole document re-indexed.
        index_name = es_index_name_for_dataset(suggestion.record.dataset)
        record_id = str(suggestion.record_id)
        source = await self._source(index_name, record_id)
        (source.get("suggestions") or {}).pop(suggestion.question.name, None)
        await self.client.index(index=index_name, id=record_id, body=source, refresh=True)


def register() -> None:
    """Replace the stock engine under the name ARGILLA_SEARCH_ENGINE=opensearch selects."""
    SearchEngine.register(engine_name=SEARCH_ENGINE_OPENSEARCH)(OsmemOpenSearchEngine)
