"""Entry point of the ``converge`` command: parses arguments and dispatches to the command modules.

Errors of the project's own tree end as one clear line and exit status 2 (usage, configuration) or 1;
secrets are never echoed.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from converge.cli import demo, load_cmd, output, repair_cmds, sync_cmds
from converge.cli.context import COMMON, add_common, settings
from converge.core.errors import ConfigurationError, ConvergeError
from converge.store import migrate


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="converge", description="Converge: Neutron intent → SDN controller sync")
    add_common(p)
    sub = p.add_subparsers(dest="command", required=True)
    fab = sub.add_parser("fabric", help="the reference fabric controller").add_subparsers(
        dest="fabric_cmd", required=True
    )
    fab.add_parser("serve", help="run the controller (see: converge fabric serve --help)", add_help=False)
    dbp = sub.add_parser("db", help="schema").add_subparsers(dest="db_cmd", required=True)
    up = dbp.add_parser("upgrade", parents=[COMMON], help="create or upgrade Converge's tables (both branches; "
                        "with Neutron, neutron-db-manage does it: docs/operations.md#upgrades)")
    phase = up.add_mutually_exclusive_group()
    phase.add_argument("--expand", dest="phase", action="store_const", const=migrate.Phase.EXPAND,
                       help="only the additive revisions (safe while servers run older code)")
    phase.add_argument("--contract", dest="phase", action="store_const", const=migrate.Phase.CONTRACT,
                       help="only the revisions that drop what older code used (once every server runs this code)")
    up.set_defaults(func=cmd_db_upgrade, phase=None)
    for name, text in (("adopt", "record intent for every existing Neutron resource (--config-file, "
                                 "--os-cloud or --neutron-url); see converge adopt --help"),):
        sub.add_parser(name, help=text, add_help=False)
    sync_cmds.add_parsers(sub)
    repair_cmds.add_parsers(sub)
    load_cmd.add_parsers(sub)
    demo.add_parsers(sub)
    return p


def cmd_db_upgrade(cfg: object, args: argparse.Namespace) -> int:
    from converge.cli.context import Settings

    assert isinstance(cfg, Settings)
    migrate.upgrade(cfg.engine(upgrade=False), args.phase)
    output.console.print(f"schema is up to date{f' ({args.phase.value} branch)' if args.phase else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    neutron_mode = argv[:1] == ["adopt"] or (argv[:1] in (["drift"], ["repair"]) and "--neutron" in argv)
    if neutron_mode:
        # Intent from Neutron's API: the module lives with the rest of Converge's Neutron code and needs
        # Neutron's API client, so it is imported only here, when asked for; the one exception to "cli never
        # imports converge.neutron", written down in pyproject.toml's layers contract.
        # Neutron's libraries import eventlet, which warns at import that it is deprecated: not the user's
        # business here (Converge's commands do not use it).
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        from converge.neutron import adopt

        rest = [a for a in argv[1:] if a != "--neutron"]
        try:
            return int(adopt.main(rest, command=argv[0]))
        except ConvergeError as err:
            return output.fail(str(err), 2 if isinstance(err, ConfigurationError) else 1)
    if argv[:2] == ["fabric", "serve"]:
        from converge.fabric.serve import main as serve

        return serve(argv[2:], prog="converge fabric serve")
    args = parser().parse_args(argv)
    try:
        return int(args.func(settings(args), args))
    except ConfigurationError as err:
        return output.fail(str(err), 2)
    except ConvergeError as err:
        return output.fail(f"{type(err).__name__}: {err}", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
