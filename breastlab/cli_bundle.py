"""``breastlab bundle``: share bundles, as archives that run outside this repository (``export``) and with model
cards and licences generated from their metadata (``card``)."""

from __future__ import annotations

import argparse

from breastlab.bundle import Bundle, find_bundles, get_bundle


def cmd_export(args) -> None:
    from breastlab.sharing import export_bundle

    for bundle in _named_bundles(args):
        print(f"wrote {export_bundle(bundle, args.out)}")


def cmd_card(args) -> int:
    from breastlab.cards import write_cards

    stale = [path for bundle in _named_bundles(args) for path in write_cards(bundle, check=args.check)]
    for path in stale:
        print(f"{'differs from its metadata' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


def _named_bundles(args) -> list[Bundle]:
    if not args.bundles and not args.all:
        raise ValueError("name the bundles, or --all")
    return find_bundles() if args.all else [get_bundle(name) for name in args.bundles]


def _add_bundle_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="*", metavar="BUNDLE", help="bundle names under bundles/ or bundle folders")
    parser.add_argument("--all", action="store_true", help="every bundle under bundles/")


def add_bundle_commands(sub) -> None:
    """``bundle export`` and ``bundle card`` under the ``breastlab`` parser's subcommands ``sub``."""
    s = sub.add_parser("bundle", help="share bundles: archives that run outside this repository, model cards")
    actions = s.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export", help="write NAME_vX.Y.Z.zip (MONAI bundle layout, sample input inside)")
    _add_bundle_names(a)
    a.add_argument("--out", required=True, help="folder for the archives")
    a.set_defaults(func=cmd_export)
    a = actions.add_parser("card", help="write LICENSE and docs/model_card.md from configs/metadata.json")
    _add_bundle_names(a)
    a.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs from its metadata")
    a.set_defaults(func=cmd_card)
