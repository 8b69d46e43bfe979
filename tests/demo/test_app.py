"""The demo server without a browser (Starlette's test client): the websocket protocol, errors as messages that
keep the connection, the session cap, freeing on disconnect and after idling, recording downloads, the CLI."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette", reason="the demo server needs the demo extra: pip install -e '.[demo]'")
pytest.importorskip("httpx", reason="starlette's test client needs httpx (dev extra)")

from starlette.testclient import TestClient  # noqa: E402

from hma_zoo.demo.app import create_app  # noqa: E402
from tests.demo.helpers import tiny_manager  # noqa: E402


def _client(**config: object) -> tuple[TestClient, object]:
    manager = tiny_manager(**config)
    return TestClient(create_app(manager.config, manager)), manager


def test_a_drive_over_the_websocket_and_errors_that_keep_the_connection() -> None:
    client, manager = _client()
    with client, client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["models"] == ["tiny", "tiny-no-policy"]
        ws.send_json({"type": "describe", "model": "tiny", "id": 1})
        desc = ws.receive_json()
        assert desc["id"] == 1 and [e["name"] for e in desc["embodiments"]] == ["pusht", "arm"]
        assert desc["embodiments"][0]["prompts"] == ["example"] and desc["embodiments"][0]["frame_hz"] == 10.0
        ws.send_json({"type": "start", "model": "tiny", "embodiment": "pusht"})
        started = ws.receive_json()
        assert started["type"] == "started" and started["image"].startswith("data:image/png;base64,")
        assert started["control"] == "position" and started["action_dim"] == 2
        for bad, message in [("not json", "not JSON"), ('["a list"]', "JSON object"),
                             ('{"type": "fly"}', "unknown message type 'fly'"),
                             ('{"type": "step", "action": [1, "x"]}', "malformed action"),
                             ('{"type": "start", "model": "nope", "embodiment": "pusht"}', "unknown model 'nope'"),
                             ('{"type": "start", "model": "tiny", "embodiment": "hopper"}', "unknown embodiment")]:
            ws.send_text(bad)
            reply = ws.receive_json()
            assert reply["type"] == "error" and message in reply["message"], (bad, reply)
        ws.send_json({"type": "step", "action": [300.0, 300.0], "id": 7})
        frame = ws.receive_json()
        assert frame["type"] == "frame" and frame["step"] == 1 and frame["id"] == 7 and frame["server_ms"] > 0
        ws.send_json({"type": "record", "on": True})
        assert ws.receive_json()["recording"] is True
        for _ in range(3):
            ws.send_json({"type": "step", "mode": "replay"})
            assert ws.receive_json()["type"] == "frame"
        gif = client.get(f"/recording/{hello['session']}/gif")
        assert gif.status_code == 200 and gif.content[:6] == b"GIF89a"
        assert "attachment" in gif.headers["content-disposition"]
        assert client.get("/recording/not-a-session/gif").status_code == 404
        assert client.get("/healthz").json() == {"sessions": 1, "max_sessions": 4}
    assert manager.sessions == {}  # freed when the page went away


def test_one_session_over_the_cap_gets_a_clear_message() -> None:
    client, manager = _client(max_sessions=1)
    with client, client.websocket_connect("/ws") as first:
        assert first.receive_json()["type"] == "hello"
        with client.websocket_connect("/ws") as second:
            refused = second.receive_json()
            assert refused["type"] == "error" and refused["fatal"]
            assert "serves at most 1 sessions at once" in refused["message"]
        assert len(manager.sessions) == 1


def test_an_idle_session_is_freed_and_told_so() -> None:
    client, manager = _client(idle_timeout_s=0.2)
    with client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "hello"
        deadline = time.monotonic() + 10
        while manager.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.sessions == {}
        notice = ws.receive_json()
        assert notice["type"] == "error" and notice["fatal"] and "without activity" in notice["message"]


def test_the_page_and_its_script_are_served() -> None:
    client, _ = _client()
    with client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="fps"' in page.text and "/static/demo.js" in page.text
        assert "new WebSocket" in client.get("/static/demo.js").text


def test_cli_unknown_model_is_one_line(capsys) -> None:
    from hma_zoo.cli import main

    assert main(["demo", "--model", "hma-vq-t64.no-such-tag", "--port", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hma-zoo demo: error:" in err[0] and "hma-vq-t64.simmix" in err[0]
