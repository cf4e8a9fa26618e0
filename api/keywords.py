"""The sensitive-word list as the API changes and shows it: rules on the compacted PREFIX.keywords topic, which
every worker follows live (moderation/keyword_admin.py), so a word added here is applied within seconds.

The API never keeps a list of its own: a change is one record written with acks=all, a listing reads the topic to
its end, so the API, the CLI (`wxarchive keywords`) and the workers always agree.
"""

from __future__ import annotations

from moderation.keyword_admin import current_rules, write_rules
from schemas.keywords import KeywordRule
from wxarchive.config import Settings

__all__ = ["KeywordList", "MAX_WORD_CHARS"]

MAX_WORD_CHARS = 100  # a sensitive word, not a document: longer is a mistake


class KeywordList:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def add(self, rule: KeywordRule) -> None:
        await write_rules(self._settings, [rule])

    async def remove(self, rule: KeywordRule) -> None:
        await write_rules(self._settings, [rule], remove=True)

    async def rules(self) -> list[KeywordRule]:
        return await current_rules(self._settings)
