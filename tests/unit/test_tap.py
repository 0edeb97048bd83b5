"""Options and the service they build, without a real reactor."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.application.service import Application, MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver

import txchat
from txchat.config import Config
from txchat.hub import HubService
from txchat.limits import FILES_HELD_BACK, connectionsWithin
from txchat.listener import Listener
from txchat.logservice import LogService
from txchat.logtext import LogText
from txchat.protocol import ChatProtocol
from txchat.sqlitelog import SqliteLog
from txchat.tap import YOUNG_COLLECTION_THRESHOLD, Options, makeService


@pytest.fixture(autouse=True)
def inTemporaryDirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """makeService opens the default store, ./txchat.sqlite3: here, not in the checkout."""
    monkeypatch.chdir(tmp_path)


def hubServices(service: MultiService) -> list[HubService]:
    return [c for c in service if isinstance(c, HubService)] + [
        h for c in service if isinstance(c, LogService) for h in hubServices(c)
    ]


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults_are_the_gorilla_chats_and_come_from_config() -> None:
    config = parse().config()
    assert config == Config()
    assert config.listen == ("tcp:8080",)
    assert (config.maxMessageSize, config.sendQueue) == (512, 256)
    assert (config.pingInterval, config.pongTimeout, config.writeTimeout) == (54, 60, 10)
    assert config.allowedOrigins == () and config.redis is None
    # No limit the gorilla chat lacks is on by default; only the total stays.
    assert config.maxConnectionsPerIp == 0 and config.rateLimit == 0
    assert config.maxConnections == 10000


def test_every_setting_reaches_config() -> None:
    config = parse(
        "--max-message-size", "100", "--send-queue", "7", "--rate-limit", "5", "--max-connections-per-ip", "3",
        "--handshake-timeout", "4", "--redis-backlog", "9", "--trusted-proxy", "10.0.0.0/8",
        "--redis-timeout", "1.5", "--handshakes-per-turn", "0",
    ).config()
    assert (config.maxMessageSize, config.sendQueue, config.rateLimit, config.maxConnectionsPerIp) == (100, 7, 5, 3)
    assert (config.handshakeTimeout, config.redisBacklog, config.trustedProxies) == (4, 9, ("10.0.0.0/8",))
    assert config.redisTimeout == 1.5 and parse().config().redisTimeout == 3.0
    assert config.handshakesPerTurn == 0 and parse().config().handshakesPerTurn == 1


def test_port_and_interface_become_an_endpoint() -> None:
    assert parse("--port", "9000", "--interface", "127.0.0.1").config().listen == ("tcp:9000:interface=127.0.0.1",)
    assert parse("--port", "9000", "--interface", "::1").config().listen == (r"tcp:9000:interface=\:\:1",)


def test_listen_is_repeatable_and_replaces_port() -> None:
    options = parse("--listen", "tcp:9001", "--listen", "unix:/tmp/txchat-test.sock")
    assert options.config().listen == ("tcp:9001", "unix:/tmp/txchat-test.sock")


def test_help_shows_no_empty_defaults_and_the_readmes_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    assert "[default: ]" not in text
    assert "redis://[[user]:password@]host[:port][/db]" in text
    assert "--rate-limit=" in text and "[default: 0.0]" in text
    assert "--redis-timeout=" in text and "[default: 3.0]" in text


def test_version_names_txchat(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse("--version")
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"txchat {txchat.__version__} (Twisted ")


def test_repeatable_allowed_origin_and_redis() -> None:
    options = parse("--allowed-origin", "https://a.example", "--allowed-origin", "*", "--redis", "redis://:pw@h:6379/2")
    assert options["allowed-origin"] == ["https://a.example", "*"]
    assert options["redis"] == "redis://:pw@h:6379/2"


@pytest.mark.parametrize(
    "args, option",
    [
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--port", "eighty"], "--port"),
        (["--max-message-size", "0"], "--max-message-size"),
        (["--max-message-size", "-5"], "--max-message-size"),
        (["--send-queue", "0"], "--send-queue"),
        (["--ping-interval", "-1"], "--ping-interval"),
        (["--pong-timeout", "nan"], "--pong-timeout"),
        (["--write-timeout", "0"], "--write-timeout"),
        (["--write-timeout", "inf"], "--write-timeout"),
        (["--listen", "tcp:notaport"], "--listen"),
        (["--listen", "bogus:1"], "--listen"),
        (["--redis", "http://localhost"], "--redis"),
        (["--redis", "redis://:6379"], "--redis"),
        (["--redis", "redis://h:99999"], "--redis"),
        (["--redis", "redis://h:6379/x"], "--redis"),
        (["--allowed-origin", "http://a.example/path"], "--allowed-origin"),
        (["--interface", "127.0.0.1", "--listen", "tcp:1"], "--interface"),
        (["--metrics-listen", "nope:1"], "--metrics-listen"),
        (["--trusted-proxy", "proxy.example"], "--trusted-proxy"),
        (["--rate-limit", "-1"], "--rate-limit"),
        (["--max-connections", "-1"], "--max-connections"),
        (["--handshake-timeout", "0"], "--handshake-timeout"),
        (["--handshakes-per-turn", "-1"], "--handshakes-per-turn"),
        (["--token-secret", "x"], "--token-secret"),
        (["--token-secret", "é" * 15 + "x"], "--token-secret"),  # 31 bytes, 16 characters
        (["--store", "txchat.sqlite3"], "--store"),
        (["--store", "sqlite:"], "--store"),
        (["--retention", "-1"], "--retention"),
        (["--recovery-max", "-1"], "--recovery-max"),
    ],
)
def test_bad_values_give_one_line_naming_the_option(args: list[str], option: str) -> None:
    with pytest.raises(SystemExit) as e:
        parse(*args)
    message = str(e.value.code)
    assert "\n" not in message
    assert message.startswith("twistd txchat: error: ")
    assert option in message


def test_an_hs256_secret_under_32_bytes_is_refused_naming_the_option_it_came_from(tmp_path: Path) -> None:
    short, enough = tmp_path / "short", tmp_path / "enough"
    short.write_text("y" * 31 + "\n")
    enough.write_text("y" * 32 + "\n")
    with pytest.raises(SystemExit) as e:
        parse("--token-secret-file", str(short))
    message = str(e.value.code)
    assert message.startswith("twistd txchat: error: --token-secret-file: ") and "\n" not in message
    assert "at least 32 bytes" in message and "has 31" in message
    assert parse("--token-secret-file", str(enough)).config().tokenSecret == "y" * 32
    assert parse("--token-secret", "z" * 32).config().tokenSecret == "z" * 32


def test_max_connections_is_capped_to_what_the_open_file_limit_holds() -> None:
    assert FILES_HELD_BACK == 64
    assert connectionsWithin(10000, 1024) == 1024 - 1024 // 4  # a storm's handshakes held back too
    assert connectionsWithin(0, 1024) == 768  # no limit asked: the files still limit
    assert connectionsWithin(768, 1024) is None and connectionsWithin(100, 1024) is None
    assert connectionsWithin(10000, 256) == 256 - 64
    assert connectionsWithin(10000, 1048576) is None
    assert connectionsWithin(10, 10) == 1


def test_make_service_listens_where_asked_and_stops_the_hub_last() -> None:
    reactor = MemoryReactorClock()
    service = makeService(parse("--listen", "tcp:9001:interface=127.0.0.1", "--listen", "tcp:9002"), reactor)
    assert isinstance(service, MultiService)
    children = [c for c in service if isinstance(c, (LogService, Listener))]
    # The hub within the log's service: the log closes after the hub has stopped.
    assert isinstance(children[0], LogService) and [type(c) for c in children[0]] == [HubService]
    assert all(isinstance(c, Listener) for c in children[1:]) and len(children) == 3
    service.privilegedStartService()
    service.startService()
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [(9001, "127.0.0.1"), (9002, "")]
    d = service.stopService()
    assert d.called


def test_metrics_get_their_own_endpoint_and_only_when_asked() -> None:
    reactor = MemoryReactorClock()
    makeService(parse("--listen", "tcp:9001"), reactor).startService()
    assert [port for port, *_ in reactor.tcpServers] == [9001]
    reactor = MemoryReactorClock()
    makeService(parse("--listen", "tcp:9001", "--metrics-listen", "tcp:9100:interface=127.0.0.1", "--store", "memory"),
                reactor).startService()
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [(9001, ""), (9100, "127.0.0.1")]


def test_the_hub_builds_chat_connections() -> None:
    service = makeService(parse("--listen", "tcp:9001"), MemoryReactorClock())
    assert isinstance(service, MultiService)
    (hubService,) = hubServices(service)
    assert isinstance(hubService.hub.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)), ChatProtocol)


def test_twistd_logging_to_stdout_gets_logtext_as_its_applications_observer() -> None:
    """twistd asks the application for an ILogObserver before it makes its own."""
    options = parse("--listen", "tcp:9001", "--store", "memory")
    options.parent = cast(Any, {"nodaemon": True, "logfile": None})  # twistd -n: its lines to standard output
    application = Application("txchat")
    makeService(options, MemoryReactorClock()).setServiceParent(application)
    assert isinstance(application.getComponent(ILogObserver), LogText)

    options.parent = cast(Any, {"nodaemon": False, "logfile": None})  # a daemon: twistd's own twistd.log
    application = Application("txchat")
    makeService(options, MemoryReactorClock()).setServiceParent(application)
    assert application.getComponent(ILogObserver) is None


def test_the_started_service_makes_the_cyclic_collector_run_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        makeService(parse("--listen", "tcp:9001"), MemoryReactorClock()).startService()
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, 10, 10)
        assert YOUNG_COLLECTION_THRESHOLD >= 10_000
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_the_chat_log_options_reach_config() -> None:
    config = parse("--store", "sqlite:/var/lib/txchat/log.sqlite3", "--retention", "30", "--recovery-max", "5000").config()
    assert (config.store, config.retention, config.recoveryMax) == ("sqlite:/var/lib/txchat/log.sqlite3", 30, 5000)
    assert (parse().config().store, parse().config().retention, parse().config().recoveryMax) == (None, 0, 1000)


def test_with_no_options_the_log_is_txchat_sqlite3_in_the_working_directory(tmp_path: Path) -> None:
    service = makeService(parse("--listen", "tcp:9001"), MemoryReactorClock())
    assert isinstance(service, MultiService)
    (hubService,) = hubServices(service)
    assert isinstance(hubService.hub.log, SqliteLog) and (tmp_path / "txchat.sqlite3").exists()
    service.startService()
    service.stopService()
    again = SqliteLog("txchat.sqlite3")  # closed at stop: another may open it
    again.close()


def test_with_redis_and_no_store_no_log_is_kept(tmp_path: Path) -> None:
    service = makeService(parse("--listen", "tcp:9001", "--redis", "redis://127.0.0.1:1"), MemoryReactorClock())
    assert isinstance(service, MultiService)
    (hubService,) = hubServices(service)
    assert hubService.hub.log is None and not (tmp_path / "txchat.sqlite3").exists()


def test_a_store_that_cannot_be_opened_stops_make_service_before_it_listens(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("not a database\n" * 50)
    reactor = MemoryReactorClock()
    with pytest.raises(SystemExit) as e:
        makeService(parse("--listen", "tcp:9001", "--store", "sqlite:notes"), reactor)
    assert str(e.value) == "twistd txchat: error: --store: notes: not a SQLite database"
    assert reactor.tcpServers == []
