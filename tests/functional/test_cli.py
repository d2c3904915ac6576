"""The ``converge`` command line as an operator runs it: real subprocesses on a real SQLite store and the
real controller. Every test also checks that neither controller token ever appears in any output."""

import json
import socket
import subprocess
from pathlib import Path

import pytest
from engine_support import (
    assert_converged,
    change,
    cli_env,
    new_store,
    record,
    run_cli,
)
from sqlalchemy import update

from converge.core.ids import WorkerId
from converge.store import leases
from converge.store.schema import workers
from converge.testing.mariadb import free_port


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def cli(store_url, fabric):
    """``cli(*args)`` runs ``converge ARGS --db <store>`` against ``fabric``; outputs are checked for tokens."""
    outputs: list[str] = []

    def run(*args, env=None, db=True):
        result = run_cli(*args, *(["--db", store_url] if db else []), env=cli_env(fabric) if env is None else env)
        outputs.append(result.stdout + result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    run.outputs = outputs
    yield run
    assert outputs
    for text in outputs:
        assert fabric.token not in text and fabric.admin_token not in text, "a token was printed"


@pytest.fixture
def engine(store_url):
    engine = new_store(store_url)
    yield engine
    engine.dispose()


def as_json(result):
    assert result.returncode in (0, 3), (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_load_status_journal_sync_run(cli, fabric, engine):
    loaded = as_json(cli("load", "--changes", "120", "--roots", "3", "--seed", "4", "--json"))
    assert loaded["changes"] == 120 and loaded["roots"] == 3

    status = as_json(cli("status", "--json"))
    assert sum(r["pending"] for r in status["roots"]) == 120
    assert status["settings"]["token"] == "(file)" and status["settings"]["backend"] == "fabric"
    assert [c["state"] for c in status["controllers"]] == ["closed"] and status["controller_error"] is None

    journal = as_json(cli("journal", "--json", "--limit", "500"))
    assert len(journal["pending"]) == 120 and journal["problems"] == []
    first = journal["pending"][0]
    shown = as_json(cli("journal", "show", first["kind"], first["id"], "--json"))
    assert shown["desired"]["id"] == first["id"] and shown["journal"][0]["seq"] == first["seq"]
    assert shown["status"] is None  # nothing synced yet

    missing = cli("journal", "show", "network", "no-such-network")
    assert missing.returncode == 1 and "no object network no-such-network" in missing.stderr
    half = cli("journal", "show", "network")
    assert half.returncode == 2 and "KIND ID" in half.stderr

    synced = cli("sync", "run", "--until-idle", "--timeout", "60", "--log-level", "DEBUG")
    assert synced.returncode == 0 and "idle" in synced.stdout, synced.stderr

    status = as_json(cli("status", "--json"))
    assert all(r["pending"] == 0 and r["errors"] == 0 and r["blocked"] == 0 for r in status["roots"])
    human = cli("status")
    assert human.returncode == 0 and "converged" in human.stdout and "not converged" not in human.stdout
    shown = as_json(cli("journal", "show", first["kind"], first["id"], "--json"))
    assert shown["status"]["state"] == "synced" and shown["journal"] == []
    assert_converged(engine, fabric)


def test_drift_lists_differences_and_repair_fixes_one_root(cli, fabric, engine):
    assert cli("load", "--changes", "150", "--roots", "3", "--seed", "5", "--json").returncode == 0
    assert cli("sync", "run", "--until-idle", "--timeout", "60").returncode == 0
    clean = cli("drift", "--json")
    assert clean.returncode == 0 and as_json(clean)["differences"] == []
    assert cli("drift").returncode == 0

    victim = "project-00001"
    dropped = fabric.admin("POST", "drop", {"count": 2, "root": victim})["objects"]
    corrupted = fabric.admin("POST", "corrupt", {"count": 1, "root": victim})["objects"]
    found = cli("drift", "--json")
    assert found.returncode == 3
    differences = {(d["root"], d["kind"], d["id"]): d["difference"] for d in as_json(found)["differences"]}
    assert differences == {**{(o["root"], o["kind"], o["id"]): "missing on controller" for o in dropped},
                           **{(o["root"], o["kind"], o["id"]): "differs" for o in corrupted}}
    human = cli("drift")
    assert human.returncode == 3 and all(o["id"] in human.stdout for o in dropped + corrupted)
    assert "3 differences" in human.stdout

    fixed = cli("repair", "--root", victim, "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert as_json(fixed)["repaired_here"] == {victim: 3}
    assert cli("drift").returncode == 0
    assert_converged(engine, fabric)

    unsaid = cli("repair")
    assert unsaid.returncode == 2 and "--root ROOT" in unsaid.stderr


def test_retry_puts_a_refused_object_back(cli, fabric, engine):
    fabric.admin("PUT", "faults", {"reject_name_pattern": "^bad"})
    record(engine, [change("p1", "network", "bad-net", name="bad"),
                    change("p1", "subnet", "sub", network_id="bad-net", cidr="10.0.0.0/24"),
                    change("p1", "network", "good-net", name="good")])
    assert cli("sync", "run", "--until-idle", "--timeout", "60").returncode == 0
    problems = {p["id"]: p for p in as_json(cli("journal", "--json"))["problems"]}
    assert problems["bad-net"]["state"] == "error" and "reject_name_pattern" in problems["bad-net"]["message"]
    assert problems["sub"]["state"] == "blocked"
    table = cli("journal")
    assert table.returncode == 0 and "bad-net" in table.stdout

    assert as_json(cli("retry", "network/good-net", "--json")) == {"retried": []}  # not refused: nothing
    fabric.admin("PUT", "faults", {"reject_name_pattern": None})
    assert as_json(cli("retry", "network/bad-net", "--json")) == {"retried": ["network/bad-net"]}
    assert cli("sync", "run", "--until-idle", "--timeout", "60").returncode == 0
    assert as_json(cli("journal", "--json"))["problems"] == []
    assert_converged(engine, fabric)

    fabric.admin("PUT", "faults", {"reject_name_pattern": "^bad"})
    record(engine, [change("p1", "network", "bad-net", "update", revision=2, name="bad again")])
    assert cli("sync", "run", "--until-idle", "--timeout", "60").returncode == 0
    fabric.admin("PUT", "faults", {"reject_name_pattern": None})
    by_root = cli("retry", "--root", "p1")
    assert by_root.returncode == 0 and "1 refused objects put back" in by_root.stdout
    assert cli("sync", "run", "--until-idle", "--timeout", "60").returncode == 0
    assert_converged(engine, fabric)


def test_bad_input_gets_one_clear_line_and_no_traceback(cli, fabric, tmp_path):
    no_slash = cli("retry", "foo")
    assert no_slash.returncode == 2 and "'foo': expected KIND/ID" in no_slash.stderr
    nothing = cli("retry")
    assert nothing.returncode == 2 and "say what to retry" in nothing.stderr

    secret = "s3cr3t-db-password"
    for url in ["nonsense", "foo://bar", f"postgresql://converge:{secret}@127.0.0.1:1/converge",
                f"mysql+pymysql://converge:{secret}@127.0.0.1:{free_port()}/converge"]:
        result = cli("status", "--db", url, db=False)
        assert result.returncode in (1, 2), (url, result.returncode, result.stderr)
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) <= 3, result.stderr
        assert "database" in result.stderr.lower(), result.stderr
        assert secret not in result.stdout + result.stderr

    no_token = cli("drift", env=cli_env(CONVERGE_CONTROLLERS=fabric.url))
    assert no_token.returncode == 2 and "no controller token" in no_token.stderr
    unreadable = cli("drift", "--token-file", str(tmp_path / "missing"), env=cli_env(CONVERGE_CONTROLLERS=fabric.url))
    assert unreadable.returncode == 2 and "cannot read token file" in unreadable.stderr
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-" + "x" * 20)
    refused = cli("drift", "--token-file", str(wrong), env=cli_env(CONVERGE_CONTROLLERS=fabric.url))
    assert refused.returncode == 2 and "refused the configured token (401)" in refused.stderr
    assert "not-the-token" not in refused.stdout + refused.stderr
    store_only = tmp_path / "store-only.conf"
    store_only.write_text(f"[database]\nconnection = sqlite:///{tmp_path / 'store-only.sqlite'}\n")
    not_neutron = cli("drift", "--neutron", "--neutron-url", f"http://127.0.0.1:{free_port()}",
                      "--config-file", str(store_only), db=False)
    assert not_neutron.returncode == 2 and "is not Neutron's database" in not_neutron.stderr, not_neutron.stderr
    assert "Eventlet" not in not_neutron.stderr  # Neutron's import-time banner is not the user's business
    drift_help = cli("drift", "--help", db=False).stdout
    assert "--os-cloud" in drift_help and "--neutron-url" in drift_help
    served = cli("fabric", "serve", "--help", db=False)
    assert served.returncode == 0 and served.stdout.startswith("usage: converge fabric serve"), served.stdout[:80]
    bad_root = cli("repair", "--root", "bad root!")
    assert bad_root.returncode == 2 and "invalid root id 'bad root!'" in bad_root.stderr
    assert cli("status", "--root", "../x").returncode == 2
    no_folder = cli("status", "--db", "sqlite:////proc/nope/x.sqlite", db=False)
    assert no_folder.returncode == 2 and no_folder.stderr.strip().splitlines() == [
        "error: cannot make the store's folder /proc/nope: No such file or directory"]
    no_url = cli("drift", env=cli_env(CONVERGE_TOKEN_FILE=str(fabric.token_file)))
    assert no_url.returncode == 2 and "no controller URL" in no_url.stderr
    bad_url = cli("drift", "--controller", "ftp://example", env=cli_env(CONVERGE_TOKEN_FILE=str(fabric.token_file)))
    assert bad_url.returncode == 2 and "must start with http://" in bad_url.stderr


def test_a_token_from_the_environment_is_used_and_never_shown(cli, fabric, engine):
    env = cli_env(CONVERGE_CONTROLLERS=fabric.url, CONVERGE_TOKEN=fabric.token)
    record(engine, [change("p1", "network", "n1", name="n")])
    assert cli("sync", "run", "--until-idle", "--timeout", "60", "--log-level", "DEBUG", env=env).returncode == 0
    status = as_json(cli("status", "--json", env=env))
    assert status["settings"]["token"] == "(env)" and [c["state"] for c in status["controllers"]] == ["closed"]
    assert cli("drift", env=env).returncode == 0
    assert cli("status", env=env).returncode == 0
    assert_converged(engine, fabric)


def test_a_refused_token_is_said_once_clearly_and_shown_by_status(cli, fabric, engine, tmp_path):
    """A worker with the wrong token: one ERROR line naming the problem (not a traceback per root per
    retry, not a line per request), and ``converge status`` shows the controller as unauthorized."""
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-" + "x" * 20)
    env = cli_env(CONVERGE_CONTROLLERS=fabric.url, CONVERGE_TOKEN_FILE=str(wrong))
    record(engine, [change(f"p{i}", "network", f"n{i}", name="n") for i in range(5)])
    run = cli("sync", "run", "--until-idle", "--timeout", "8", env=env)
    assert run.returncode == 1
    said = [line for line in run.stderr.splitlines() if "refused the configured token (401)" in line]
    assert len(said) == 1 and " ERROR " in said[0] and "token_file" in said[0], run.stderr
    assert "HTTP Request" not in run.stderr and "not-the-token" not in run.stderr
    status = as_json(cli("status", "--json", env=env))
    assert [(c["url"], c["state"]) for c in status["controllers"]] == [(fabric.url, "unauthorized")]
    assert all("refused the configured token" in r["last_error"] for r in status["roots"]), status["roots"]


def test_status_says_when_the_controller_cannot_be_reached(cli, fabric, engine):
    dead = f"http://127.0.0.1:{free_port()}"
    status = as_json(cli("status", "--json", env=cli_env(CONVERGE_CONTROLLERS=dead,
                                                         CONVERGE_TOKEN_FILE=str(fabric.token_file))))
    assert "no controller answered" in status["controller_error"]
    assert [c["url"] for c in status["controllers"]] == [dead] and status["controllers"][0]["error"]


def test_a_standalone_agent_takes_its_settings_from_neutron_config_files(cli, fabric, engine, store_url, tmp_path):
    """``converge sync run --config-file neutron.conf --config-file ml2_conf.ini``: the database from
    [database], controllers and token from [converge], later files winning; the token is never shown."""
    neutron_conf = tmp_path / "neutron.conf"
    neutron_conf.write_text(f"[DEFAULT]\ncore_plugin = ml2\n[database]\nconnection = {store_url}\n"
                            f"[converge]\ncontroller_urls = http://127.0.0.1:{free_port()}\ntoken = wrong\n")
    ml2_conf = tmp_path / "ml2_conf.ini"
    ml2_conf.write_text(f"[ml2]\nmechanism_drivers = converge\n[converge]\ncontroller_urls = {fabric.url}\n"
                        f"token = {fabric.token}\n")
    record(engine, [change("p1", "network", "n1", name="from-neutron")])
    agent = ["--config-file", str(neutron_conf), "--config-file", str(ml2_conf)]
    result = cli("sync", "run", "--until-idle", "--timeout", "60", *agent, env=cli_env(), db=False)
    assert result.returncode == 0, result.stderr
    assert_converged(engine, fabric)
    status = as_json(cli("status", "--json", *agent, env=cli_env(), db=False))
    assert status["settings"]["token"] == "(config file)" and status["controllers"][0]["url"] == fabric.url


def test_sync_run_refuses_a_second_live_worker_on_one_sqlite_store(cli, fabric, engine):
    """SQLite has one write lock: a paused worker would hold every other writer. One sync worker per file;
    a worker that died on this host (its PID gone) does not count."""
    with engine.begin() as conn:
        leases.heartbeat(conn, WorkerId("alive-elsewhere"))
        conn.execute(update(workers).where(workers.c.worker == "alive-elsewhere").values(host="other-host", pid=4242))
    refused = cli("sync", "run", "--until-idle", "--timeout", "10")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "another sync worker (alive-elsewhere, pid 4242 on other-host" in refused.stderr
    assert "use MariaDB" in refused.stderr
    with engine.begin() as conn:  # the same worker, now a dead process of this host
        conn.execute(update(workers).where(workers.c.worker == "alive-elsewhere")
                     .values(host=socket.gethostname()[:255], pid=dead_pid()))
    assert cli("sync", "run", "--until-idle", "--timeout", "60").returncode == 0


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
