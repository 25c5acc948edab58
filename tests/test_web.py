"""The browser page in headless Chromium: fake microphone → enrol → streamed audio received."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from fakes import FakeEngine, fake_audio, run, voice_like
from rtclone.serve.server import running_server

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _page_ws(debug_port: int, timeout: float = 30.0) -> str:
    """The DevTools WebSocket URL of the first page target."""
    url = f"http://127.0.0.1:{debug_port}/json/list"
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            targets = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(url, timeout=2)))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("chromium did not open its DevTools endpoint")
        await asyncio.sleep(0.2)


async def _page_state(ws, n: int) -> dict:
    await ws.send(json.dumps({"id": n, "method": "Runtime.evaluate",
                              "params": {"expression": "JSON.stringify(window.rtclone || null)", "returnByValue": True}}))  # fmt: skip
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("id") == n:
            value = reply.get("result", {}).get("result", {}).get("value")
            return json.loads(value) if value else {}


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_page_enrols_from_the_microphone_and_plays_the_stream(tmp_path):
    import soundfile as sf

    mic_wav = tmp_path / "mic.wav"
    sf.write(mic_wav, voice_like(4.0, 170.0, sr=48000, seed=5), 48000, subtype="PCM_16")
    engine = FakeEngine(chunk_delay_s=0.005)
    text = "Hello from the headless browser."
    seconds = 2.0

    async def main():
        async with running_server(engine, voices_dir=tmp_path / "voices") as srv:
            debug_port = _free_port()
            url = f"http://127.0.0.1:{srv.port}/?auto=1&seconds={seconds}&name=chromium&text={text.replace(' ', '%20')}"
            proc = await asyncio.create_subprocess_exec(
                CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic_wav}", "--autoplay-policy=no-user-gesture-required",
                f"--remote-debugging-port={debug_port}", url,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                async with connect(await _page_ws(debug_port), max_size=None) as cdp:
                    state, n = {}, 0
                    for n in range(1, 400):
                        state = await _page_state(cdp, n)
                        if state and (state.get("status") == "done" or state.get("errors")):
                            break
                        await asyncio.sleep(0.1)
            finally:
                proc.kill()
                await proc.wait()
            assert state.get("status") == "done", state
            voices = srv.registry.list()
            assert [v.voice_id for v in voices] == [state["voiceId"]] and voices[0].name == "chromium"
            assert voices[0].duration_s == pytest.approx(seconds, abs=0.35)
            _, emb = srv.registry.get(state["voiceId"])
            expected = len(fake_audio(text, emb))
            assert state["received"] == state["done"]["samples"] == expected
            assert state["ttfa"] > 0 and state["chunks"] == state["done"]["chunks"]
            assert srv.metrics.streams["done"] == 1 and srv.metrics.enrolments == 1
            # The fake microphone's file was what got enrolled: its pitch-like embedding is close
            # to the embedding of the file itself (Chromium resamples; the fake engine is smooth).
            ref = engine.embed(voice_like(4.0, 170.0, sr=16000, seed=5), 16000)
            other = engine.embed(voice_like(4.0, 320.0, sr=16000, seed=9), 16000)
            assert float(emb @ ref) > float(emb @ other)

    run(main(), timeout=90)


async def _cdp(ws, n: int, method: str, **params) -> dict:
    await ws.send(json.dumps({"id": n, "method": method, "params": params}))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("id") == n:
            assert "error" not in reply, reply
            return reply.get("result", {})


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_page_enrols_a_chosen_file_a_voice_file_as_stored(tmp_path):
    """The page's file input: a voice file from `rtclone embed` is enrolled with its stored embedding."""
    import numpy as np

    from rtclone.voicefile import save_embedding

    engine = FakeEngine()
    emb = engine.embed(voice_like(2.0, 210.0, seed=3), 16000)
    save_embedding(tmp_path / "me.voice", emb, {"source": "me.wav"})

    async def main():
        async with running_server(engine, voices_dir=tmp_path / "voices") as srv:
            debug_port = _free_port()
            proc = await asyncio.create_subprocess_exec(
                CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={debug_port}",
                f"http://127.0.0.1:{srv.port}/", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                async with connect(await _page_ws(debug_port), max_size=None) as cdp:
                    n, state = 1, {}
                    while not state.get("status", "").startswith(("connected", "error")) and n < 300:  # the page connected
                        n += 1
                        state = await _page_state(cdp, n) or {}
                        await asyncio.sleep(0.1)
                    root = (await _cdp(cdp, n + 1, "DOM.getDocument"))["root"]["nodeId"]
                    node = (await _cdp(cdp, n + 2, "DOM.querySelector", nodeId=root, selector="#file"))["nodeId"]
                    await _cdp(cdp, n + 3, "DOM.setFileInputFiles", nodeId=node, files=[str(tmp_path / "me.voice")])
                    await _cdp(cdp, n + 4, "Runtime.evaluate", expression="document.querySelector('#name').value = 'filed';"
                                                                           "document.querySelector('#upload').click()")
                    for n in range(n + 5, n + 300):
                        state = await _page_state(cdp, n) or {}
                        if state.get("voiceId") or state.get("errors") or state.get("status", "").startswith("error"):
                            break
                        await asyncio.sleep(0.1)
            finally:
                proc.kill()
                await proc.wait()
            voices = srv.registry.list()
            assert [v.voice_id for v in voices] == [state.get("voiceId")], state
            assert voices[0].name == "filed" and voices[0].duration_s == 0
            np.testing.assert_allclose(srv.registry.get(state["voiceId"])[1], emb, atol=1e-6)

    run(main(), timeout=90)
