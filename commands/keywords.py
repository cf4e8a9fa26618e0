"""`wxarchive keywords add|remove|list|import`: the sensitive-word list on its compacted topic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from commands.common import Subcommands, leaf
from wxarchive.config import Settings
from wxarchive.errors import ConfigError


def register(commands: Subcommands) -> None:
    kw = commands.add_parser("keywords", help="manage the sensitive-word list (workers pick changes up within seconds)",
                             description="The sensitive-word list lives on the compacted topic PREFIX.keywords. A fuzzy "
                                         "word also matches evasive spellings (spaces, punctuation, zero-width, "
                                         "traditional, full-width); a strict word matches only as written. Allow-list "
                                         "phrases silence hits they contain.")
    kw_actions = kw.add_subparsers(dest="action", metavar="ACTION", required=True)
    kw_add = leaf(kw_actions, "add", _cmd_keywords, help="add or change a word (or an allow-list phrase)")
    kw_add.add_argument("word")
    kw_add.add_argument("--category", help="e.g. gambling, fraud, spam (default: default); not with --allow")
    kw_add.add_argument("--severity", type=int, choices=range(1, 6), metavar="1-5", help="default 1; not with --allow")
    kw_add.add_argument("--strict", action="store_true", help="match only as written, without folding evasions")
    kw_add.add_argument("--allow", action="store_true", help="an allow-list phrase: hits inside it are not reported")
    kw_add.add_argument("--pinyin", action="store_true", help="also match the word spelled in pinyin (赌博: dubo, du bo)")
    kw_add.add_argument("--group", action="append", default=[], metavar="ID@chatroom", help="only in this group (repeatable)")
    kw_add.add_argument("--account", action="append", default=[], metavar="WCID", help="only for this account (repeatable)")
    kw_remove = leaf(kw_actions, "remove", _cmd_keywords, help="remove a word or phrase")
    kw_remove.add_argument("word")
    kw_remove.add_argument("--strict", action="store_true", help="the strict entry of the word")
    kw_remove.add_argument("--allow", action="store_true", help="an allow-list phrase")
    kw_list = leaf(kw_actions, "list", _cmd_keywords, help="show the current list")
    kw_list.add_argument("--json", action="store_true", help="one JSON object per rule")
    kw_import = leaf(kw_actions, "import", _cmd_keywords, help="add every rule of a file (all or nothing)",
                                      description="One rule per line: word[,category[,severity[,mode]]] with mode "
                                                  "fuzzy (default), strict, or pinyin (fuzzy, and spelled in pinyin "
                                                  "too), or allow:PHRASE[,mode]. Lines starting "
                                                  "with # are comments. A file with a bad line imports nothing.")
    kw_import.add_argument("file", type=Path)


def _cmd_keywords(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import dataclasses

    import orjson

    from moderation.keyword_admin import current_rules, describe, read_import_file, write_rules
    from schemas.keywords import KeywordRule

    mode = "strict" if getattr(args, "strict", False) else "fuzzy"
    if args.action == "add":
        if not args.word.strip():
            raise ConfigError("keywords add: the word is empty")
        if args.allow and (args.category is not None or args.severity is not None):
            raise ConfigError("keywords add --allow: an allow-list phrase silences hits inside it and has no category "
                              "or severity; leave out --category and --severity")
        rule = KeywordRule(args.word.strip(), args.category or "default", args.severity or 1, mode, args.allow,
                           args.pinyin, tuple(args.group), tuple(args.account))
        asyncio.run(write_rules(settings, [rule]))
        print(f"added {describe(rule)}")
    elif args.action == "remove":
        asyncio.run(write_rules(settings, [KeywordRule(args.word.strip(), mode=mode, allow=args.allow)], remove=True))
        print(f"removed {args.word.strip()!r} ({mode}{', allow-list' if args.allow else ''})")
    elif args.action == "import":
        rules = read_import_file(args.file)
        asyncio.run(write_rules(settings, rules))
        print(f"imported {len(rules)} rules from {args.file}")
    else:
        rules = asyncio.run(current_rules(settings))
        for rule in rules:
            if args.json:
                print(orjson.dumps(dataclasses.asdict(rule)).decode())
            else:
                scope = ",".join(rule.groups + rule.accounts) or "everywhere"
                kind = "allow" if rule.allow else f"{rule.category}/{rule.severity}"
                print(f"{rule.word}\t{kind}\t{rule.mode}{'+pinyin' if rule.pinyin else ''}\t{scope}")
        if not args.json:
            print(f"{len(rules)} rules", file=sys.stderr)
    return 0
