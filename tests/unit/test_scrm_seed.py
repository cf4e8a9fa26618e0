"""The SCRM shapes the API is held to (tests/fixtures/scrm_seed.py) are seed 003's own, key for key in order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.scrm_seed import GROUP_ITEM, MEMBER, PRIVATE_ANSWER, shape

SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "003_0786455be3ed5218.txt"
_KEY = re.compile(r'"(\w+)":')


@pytest.fixture(scope="module")
def seed() -> str:
    if not SEED.exists():
        pytest.skip(f"seed 003 is not beside the repository ({SEED})")
    return SEED.read_text(encoding="utf-8")


def keys(value: Any) -> list[str]:
    """Every key depth-first, in order, JSON-encoded strings opened (as the seed's text spells them out)."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(k)
            out += keys(orjson.loads(v) if k in ("lastMsg", "wechatUser") else v)
    elif isinstance(value, list):
        for v in value:
            out += keys(v)
    return out


def example(seed: str, title: str) -> str:
    """The answer example (返回值示例) of the endpoint titled `title`."""
    section = seed[seed.index(title):]
    block = section[section.index("返回值示例"):]
    return block[block.index("```") + 3: block.index("```", block.index("```") + 3)]


def test_the_private_conversation_list_is_the_seeds(seed: str) -> None:
    assert _KEY.findall(example(seed, "查看最近会话(单聊)")) == keys(PRIVATE_ANSWER)


def test_the_group_list_is_the_seeds_bare_array(seed: str) -> None:
    text = example(seed, "查看最近会话(群聊)")
    assert text.strip().startswith("[")
    assert _KEY.findall(text) == keys([GROUP_ITEM, GROUP_ITEM])


def test_get_member_is_the_seeds_json_encoded_array(seed: str) -> None:
    literal = re.search(r'"\[\{\\"PYInitial.*?\}\]"', seed)
    assert literal is not None
    members = orjson.loads(orjson.loads(literal.group()))
    assert len(members) == 6 and all(shape(m) == shape(MEMBER) for m in members)
