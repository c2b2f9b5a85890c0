"""The web client in two real browsers against a 3-node cluster on Postgres and Redis.

Alice's browser loads the client from n1, Bob's from n2 (n3 keeps a raft majority when the
room's node dies); neither is told the other nodes: the clients learn them from GET /v1/nodes.
Chat with typing, receipts, presence and unread counts (from the channel listing); a DM that
reaches the other side through `channel_added`; a meeting both join until video frames
decode; mute seen on the other side; kill -9 of the room's node with the call up (no peer
connection dropped, both rosters whole from the first snapshot of the rebuilt room, only the
impolite side re-offers); the host ends the meeting for both; lobby, reload mid-call.
KILL_RUNS=N adds N more kills of a room's node, alternating the raft leader and a follower,
for the recovery figures. Screenshots and figures go to ARTIFACTS.

Run with tests/browser/run.sh (it builds what is missing, makes a private network namespace
with only loopback, and starts the cluster)."""

import json
import os
import random
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from cluster import Cluster, http_json, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS", ROOT / "target/browser-artifacts"))
NODE_BIN = Path(os.environ.get("NODE_BIN", ROOT / "target/release/node"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
STEP = 20_000  # ms: the longest any single UI step may take
FIGURES: dict = {}
KILL_RUNS = int(os.environ.get("KILL_RUNS", "0"))
expect.set_options(timeout=STEP)
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Only loopback exists in the test's network namespace; let WebRTC use it, and do not
    # hide host candidates behind mDNS names (nothing would resolve them).
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def shot(page: Page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def call_state(page: Page) -> dict:
    return page.evaluate("window.larkDebug.call()")


def wait_js(page: Page, expression: str, timeout: int = STEP, arg=None):
    return page.wait_for_function(expression, arg=arg, timeout=timeout)


@pytest.fixture(scope="module")
def world():
    workdir = ARTIFACTS / "cluster"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    # Short-lived access tokens: the clients refresh them (at 80% of their life) and renew
    # their sockets mid-test, during the call too.
    cluster = Cluster(3, NODE_BIN, workdir, env={"ACCESS_TOKEN_TTL_SECS": "20"})
    started = time.monotonic()
    cluster.start()
    FIGURES["cluster_start_s"] = round(time.monotonic() - started, 1)
    playwright = sync_playwright().start()
    browsers = []
    pages = {}
    console = []
    try:
        for name in ("alice", "bob"):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            browsers.append(browser)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(STEP)
            page = context.new_page()
            page.on("console", lambda msg, who=name: msg.type == "error" and console.append(f"{who}: {msg.text}"))
            page.on("pageerror", lambda error, who=name: console.append(f"{who}: page error {error}"))
            page.on("dialog", lambda dialog: dialog.accept())
            pages[name] = page
        yield {"cluster": cluster, "alice": pages["alice"], "bob": pages["bob"], "console": console}
    finally:
        for name, page in pages.items():
            try:
                shot(page, f"99-{name}-last")
            except Exception as error:  # the page may be gone
                print(f"no last screenshot of {name}: {error}")
        for browser in browsers:
            browser.close()
        playwright.stop()
        cluster.stop()
        (ARTIFACTS / "figures.json").write_text(json.dumps(FIGURES, indent=2))
        (ARTIFACTS / "console-errors.txt").write_text("\n".join(console))
        print("\nfigures:", json.dumps(FIGURES, indent=2))
        print(f"artifacts: {ARTIFACTS}")


def post_json(url: str, token: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201, answer.status
        return json.load(answer)


def get_json(url: str, token: str):
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def token_of(page: Page) -> str:
    return page.evaluate("JSON.parse(localStorage['lark.session']).accessToken")


def test_chat_between_two_nodes(world):
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    slug = f"acme-{random.randrange(10**6)}"

    # Alice signs up her company on n1.
    alice.goto(f"{cluster.url(1)}/signup")
    alice.get_by_label("Company name").fill("Acme")
    alice.get_by_label("Company id").fill(slug)
    alice.get_by_label("Username").fill("alice")
    alice.get_by_label("Display name").fill("Alice")
    alice.get_by_label("Password").fill("password1")
    alice.get_by_role("button", name="Create company").click()
    alice.get_by_role("button", name="Create a channel").click()
    alice.get_by_label("Name").fill("general")
    alice.get_by_role("button", name="Create", exact=True).click()
    expect(alice.get_by_role("heading", name="# general")).to_be_visible()
    alice.get_by_role("button", name="Add a person").click()
    alice.get_by_label("Username").fill("bob")
    alice.get_by_label("Display name").fill("Bob")
    alice.get_by_label("Initial password").fill("password2")
    alice.get_by_role("button", name="Add", exact=True).click()
    expect(alice.get_by_text("bob can now sign in")).to_be_visible()
    alice.get_by_role("button", name="Close").click()

    # Bob logs in on n2 and joins #general.
    bob.goto(f"{cluster.url(2)}/")
    bob.get_by_label("Company id").fill(slug)
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill("password2")
    bob.get_by_role("button", name="Sign in", exact=True).last.click()
    bob.get_by_role("button", name="Browse channels").click()
    bob.get_by_role("button", name="Join general").click()
    expect(bob.get_by_role("heading", name="# general")).to_be_visible()
    wait_js(bob, "window.larkDebug.socket.state === 'open' && window.larkDebug.socket.nodeId === 'n2'")
    wait_js(alice, "window.larkDebug.socket.state === 'open' && window.larkDebug.socket.nodeId === 'n1'")
    # No ?nodes= in the URLs: both learned every node from GET /v1/nodes.
    all_nodes = sorted(cluster.url(i) for i in range(1, cluster.count + 1))
    for page in (alice, bob):
        wait_js(page, "n => window.larkDebug.nodes().learned.length === n", arg=cluster.count)
        assert sorted(page.evaluate("window.larkDebug.nodes().learned")) == all_nodes

    # Alice types with a mention picked from the autocomplete; Bob sees her typing.
    composer = alice.get_by_label("Message #general")
    composer.click()
    composer.press_sequentially("hello @bo", delay=20)
    expect(alice.get_by_role("listbox", name="People to mention")).to_be_visible()
    composer.press("Enter")
    composer.press_sequentially("how are you?", delay=20)
    expect(bob.get_by_text("Alice is typing…")).to_be_visible()
    shot(bob, "01-bob-sees-alice-typing")

    sent = time.monotonic()
    composer.press("Enter")
    message = bob.locator(".message", has_text="hello @bob how are you?")
    expect(message).to_be_visible()
    FIGURES["chat_send_to_other_browser_ms"] = round((time.monotonic() - sent) * 1000)
    expect(message.locator(".mention")).to_have_text("@bob")
    expect(bob.get_by_text("Alice is typing…")).to_be_hidden()
    # Bob has it on screen, so his read cursor moves: Alice sees the receipt.
    expect(alice.get_by_text("Seen by Bob")).to_be_visible()

    # Bob reacts; Alice sees it.
    message.hover()
    message.get_by_role("button", name="Add reaction").click()
    bob.get_by_role("menuitem", name="React with 👍").click()
    expect(alice.locator(".reaction", has_text="👍 1")).to_be_visible()

    # A file: Alice attaches one and sends it with no text; Bob downloads it.
    alice.locator("input[type=file]").set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello file"}])
    expect(alice.locator(".chip", has_text="notes.txt")).to_be_visible()
    composer.press("Enter")
    with bob.expect_download() as download:
        bob.get_by_role("button", name="Download notes.txt").click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_bytes() == b"hello file"

    # A thread: Bob replies to Alice's message; Alice sees the reply count.
    message.hover()
    message.get_by_role("button", name="Reply in thread").click()
    bob.get_by_role("textbox", name="Write a reply").fill("fine, thanks")
    bob.get_by_role("textbox", name="Write a reply").press("Enter")
    expect(bob.locator(".thread .message", has_text="fine, thanks")).to_be_visible()
    expect(alice.get_by_role("button", name="1 reply")).to_be_visible()
    bob.get_by_role("button", name="Close the thread").click()

    # Alice edits her message, then deletes the file message; Bob sees both.
    own = alice.locator(".message", has_text="hello @bob how are you?")
    own.hover()
    own.get_by_role("button", name="Edit message").click()
    alice.get_by_role("textbox", name="Edit message").fill("hello @bob, how are you today?")
    alice.get_by_role("textbox", name="Edit message").press("Enter")
    expect(bob.locator(".message", has_text="how are you today?")).to_contain_text("(edited)")
    file_message = alice.locator(".message", has_text="notes.txt")
    file_message.hover()
    file_message.get_by_role("button", name="Delete message").click()  # confirm() is accepted
    expect(bob.get_by_text("This message was deleted.")).to_be_visible()
    expect(alice.get_by_text("Seen by Bob")).to_be_visible()
    shot(alice, "02-alice-general-thread-reaction-edit-delete")

    # Alice opens a DM with Bob: it appears in Bob's sidebar at once (`channel_added`, no
    # message needed, no polling); his presence dot is online; her message is unread for Bob.
    alice.get_by_role("button", name="New direct message").click()
    opened = time.monotonic()
    alice.get_by_role("button", name="Message Bob").click()
    expect(bob.get_by_role("button", name="Alice", exact=True)).to_be_visible(timeout=3_000)
    FIGURES["dm_opened_to_other_sidebar_ms"] = round((time.monotonic() - opened) * 1000)
    shot(bob, "03a-bob-dm-appeared-by-channel-added")
    expect(alice.locator(".sidebar [data-presence='online']").first).to_be_visible()
    expect(alice.get_by_role("button", name="Bob", exact=True).locator("[data-presence]")).to_have_attribute("data-presence", "online")
    alice.get_by_label("Message Bob").fill("a private word")
    alice.get_by_label("Message Bob").press("Enter")
    expect(bob.get_by_role("button", name="Alice, 1 unread")).to_be_visible()
    shot(alice, "03-alice-dm-bob-online")
    shot(bob, "03-bob-unread-dm-badge")
    bob.get_by_role("button", name="Alice, 1 unread").click()
    expect(bob.locator(".message .body", has_text="a private word")).to_be_visible()
    expect(alice.get_by_text("Seen by Bob")).to_be_visible()

    # Three messages in #general while Bob reads the DM; then Bob reloads (already signed in):
    # the time to the first message, and the unread badge of #general comes from the channel
    # listing, without fetching its history (or subscribing first).
    general_id = next(e["channel"]["id"] for e in get_json(f"{cluster.url(1)}/v1/channels", token_of(alice))["channels"]
                      if e["channel"]["name"] == "general")
    for n in range(3):
        post_json(f"{cluster.url(1)}/v1/channels/{general_id}/messages", token_of(alice), {"client_msg_id": f"u{n}", "body": f"unread {n}"})
    expect(bob.get_by_role("button", name="general, 3 unread")).to_be_visible()
    history_fetches = []
    bob.on("request", lambda request: f"/v1/channels/{general_id}/messages" in request.url and history_fetches.append(request.url))
    bob.goto(f"{cluster.url(2)}/channels/{bob.url.rsplit('/', 1)[1]}")
    wait_js(bob, "window.larkDebug.firstMessagesShownAt() !== null")
    FIGURES["page_load_to_first_message_ms"] = round(bob.evaluate("window.larkDebug.firstMessagesShownAt()"))
    expect(bob.locator(".message .body", has_text="a private word")).to_be_visible()
    expect(bob.get_by_role("button", name="general, 3 unread")).to_be_visible()
    # The page shows history before its socket is up (under load that takes a while).
    wait_js(bob, "window.larkDebug.socket.state === 'open'")
    assert not history_fetches, f"the unread count fetched history: {history_fetches}"
    shot(bob, "03c-bob-unread-from-listing-after-reload")

    # History paging: 130 messages posted over HTTP before Bob opens the channel (more than
    # the unread count fetches); he sees the newest 50 and scrolls back to the first one.
    alice.get_by_role("button", name="Create a channel").click()
    alice.get_by_label("Name").fill("history")
    alice.get_by_role("button", name="Create", exact=True).click()
    expect(alice.get_by_role("heading", name="# history")).to_be_visible()
    token = token_of(alice)
    history_id = alice.url.rsplit("/", 1)[1]
    for n in range(1, 131):
        post_json(f"{cluster.url(3)}/v1/channels/{history_id}/messages", token, {"client_msg_id": f"h{n}", "body": f"history {n}"})
    bob.get_by_role("button", name="Browse channels").click()
    bob.get_by_role("button", name="Join history").click()
    bodies = bob.locator(".messages li.message .body")
    expect(bodies.last).to_have_text("history 130")
    expect(bodies).to_have_count(50)
    for _ in range(6):
        if bob.get_by_text("This is the beginning of history.").is_visible():
            break
        count = bodies.count()
        bob.locator(".messages").first.evaluate("el => { el.scrollTop = 0; }")
        wait_js(bob, "n => document.querySelectorAll('.messages li.message').length > n", arg=count)
    expect(bob.get_by_text("This is the beginning of history.")).to_be_visible()
    expect(bodies.first).to_have_text("history 1")
    expect(bodies).to_have_count(130)
    bob.get_by_role("button", name="Alice", exact=True).click()

    # Phone-sized screen: the channel list is a drawer.
    bob.set_viewport_size({"width": 390, "height": 800})
    shot(bob, "04-bob-phone-dm")
    bob.get_by_role("button", name="Open the channel list").click()
    shot(bob, "05-bob-phone-drawer")
    bob.get_by_role("button", name="general").click()
    bob.set_viewport_size({"width": 1280, "height": 800})


def start_meeting_owned_by_a_browser_node(cluster: Cluster, alice: Page) -> tuple[str, int]:
    """Starts meetings from #general until one's room lives on n1 or n2 (a browser's node),
    so killing it also kills one browser's socket. Each try has a 2/3 chance."""
    for attempt in range(8):
        alice.get_by_role("button", name="general").click()
        alice.get_by_role("button", name="📞 Start meeting").click()
        expect(alice.get_by_role("button", name="Join meeting")).to_be_visible()
        meeting_id = alice.url.rsplit("/", 1)[1]
        owner = cluster.owner_index(f"meeting:{meeting_id}")
        if owner in (1, 2):
            FIGURES["meeting_tries"] = attempt + 1
            return meeting_id, owner
        alice.get_by_role("button", name="Cancel").click()
    raise AssertionError("no meeting landed on a browser's node in 8 tries")


def test_meeting_connects_and_shows_mute(world):
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    meeting_id, owner = start_meeting_owned_by_a_browser_node(cluster, alice)
    world["meeting"] = (meeting_id, owner)
    expect(alice.locator("video").first).to_be_visible()
    shot(alice, "06-alice-preview")
    alice.get_by_role("button", name="Join meeting").click()
    wait_js(alice, "window.larkDebug.call().phase === 'in_call'")

    # Bob follows the link Alice's client posted in #general.
    bob.locator(".message", has_text="#general meeting").last.get_by_role("link", name="Join the meeting").click()
    bob.get_by_role("button", name="Join meeting").click()
    connected = "(c => c && c.peers.length === 1 && c.peers[0].connection === 'connected' && c.peers[0].frames_decoded > 10)(window.larkDebug.call())"
    wait_js(alice, connected)
    wait_js(bob, connected)
    FIGURES["join_to_connected_ms"] = {
        "alice": round(call_state(alice)["join_to_connected_ms"]),
        "bob": round(call_state(bob)["join_to_connected_ms"]),
    }
    # Roles come from the roster's `order` before any signal: Alice came first (lower order),
    # so she is the impolite side and Bob the polite one; the server's `polite` flags agree.
    a, b = call_state(alice), call_state(bob)
    assert a["order"] < b["order"], (a["order"], b["order"])
    assert a["peers"][0]["polite"] is False and b["peers"][0]["polite"] is True
    assert a["roster"][0]["participant_id"] == b["me"] and b["roster"][0]["participant_id"] == a["me"]
    # Video frames keep being decoded on both sides.
    for page in (alice, bob):
        before = call_state(page)["peers"][0]["frames_decoded"]
        wait_js(page, "n => window.larkDebug.call().peers[0].frames_decoded > n + 10", arg=before)

    alice.get_by_role("button", name="Mute microphone").click()
    alice_tile_at_bob = bob.locator("figure.tile[data-status]").filter(has_text="Alice")
    expect(alice_tile_at_bob).to_have_attribute("data-audio", "off")
    expect(alice_tile_at_bob).to_have_attribute("aria-label", "Alice: microphone off, camera on, host")
    # Host control: Alice asks Bob to mute; his client mutes and everyone sees it.
    bob_tile_at_alice = alice.locator("figure.tile[data-status]").filter(has_text="Bob")
    expect(bob_tile_at_alice).to_have_attribute("data-audio", "on")
    bob_tile_at_alice.hover()
    alice.get_by_role("button", name="Mute Bob").click()
    expect(bob.get_by_text("The host muted you.")).to_be_visible()
    expect(bob.get_by_role("button", name="Unmute microphone")).to_be_visible()
    expect(bob_tile_at_alice).to_have_attribute("data-audio", "off")
    shot(alice, "07-alice-in-call-muted")
    shot(bob, "08-bob-in-call-sees-alice-muted")
    bob.set_viewport_size({"width": 390, "height": 800})
    expect(bob.get_by_role("button", name="Leave the meeting")).to_be_in_viewport()
    shot(bob, "08b-bob-phone-in-call")
    bob.set_viewport_size({"width": 1280, "height": 800})


def roster_whole(page: Page, other_name: str, old_incarnation=None):
    """Two tiles, the other participant joined and connected, frames flowing (and, with
    `old_incarnation`, a snapshot of a newer run of the room taken)."""
    return page.evaluate(
        """([name, old]) => {
          const c = window.larkDebug.call();
          if (old !== null && c.incarnation === old) return false;
          const tiles = [...document.querySelectorAll('figure.tile')];
          const other = tiles.find(t => t.textContent.includes(name));
          return c.phase === 'in_call' && c.roster.length === 1 && c.roster[0].status === 'joined'
            && c.peers.length === 1 && c.peers[0].connection === 'connected' && tiles.length === 2
            && !!other && other.dataset.status === 'joined';
        }""",
        [other_name, old_incarnation],
    )


def kill_room_node(world, owner: int) -> dict:
    """Kills the room's node (kill -9) with the call up and checks the failover rules on both
    sides: media keeps flowing, no peer connection is closed or replaced, the rosters list
    the other participant (same id) at every step from the first snapshot of the rebuilt room
    on, the rebuilt room is a new incarnation, and only the impolite side (re-)offers."""
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    pages = (("alice", alice, "Bob"), ("bob", bob, "Alice"))
    before = {name: call_state(page) for name, page, _ in pages}
    for name, state in before.items():
        assert len(state["peers"]) == 1 and state["peers"][0]["connection"] == "connected", (name, state["peers"])
    killed_at = time.monotonic()
    cluster.kill(owner)
    result: dict = {"killed_node": f"n{owner}"}

    # Media does not go through the server: frames keep arriving while the room is rebuilt.
    for name, page, _ in pages:
        wait_js(page, "n => window.larkDebug.call().peers.length === 1 && window.larkDebug.call().peers[0].frames_decoded > n + 30",
                arg=before[name]["peers"][0]["frames_decoded"])
    result["media_flowing_ms"] = round((time.monotonic() - killed_at) * 1000)
    cluster.wait_members(sum(1 for i in cluster.procs if cluster.alive(i)), 30)
    result["members_after_kill_s"] = round(time.monotonic() - killed_at, 1)

    deadline = time.monotonic() + 40
    whole = {}
    while len(whole) < 2 and time.monotonic() < deadline:
        for name, page, other in pages:
            if name not in whole and roster_whole(page, other, before[name]["incarnation"]):
                whole[name] = time.monotonic() - killed_at
        time.sleep(0.05)
    assert len(whole) == 2, f"rosters not whole 40 s after the kill: alice={call_state(alice)} bob={call_state(bob)}"
    result["rosters_whole_ms"] = {name: round(seconds * 1000) for name, seconds in whole.items()}

    after = {name: call_state(page) for name, page, _ in pages}
    for name, _, _ in pages:
        was, now = before[name], after[name]
        other_id = was["peers"][0]["participant_id"]
        # Neither side ever dropped the other peer: no link closed, no connection replaced.
        assert now["closed_links"] == was["closed_links"], (name, now["closed_links"])
        assert len(now["peers"]) == 1 and now["peers"][0]["participant_id"] == other_id, (name, now["peers"])
        assert now["peers"][0]["replacements"] == was["peers"][0]["replacements"], (name, now["peers"][0]["log"])
        # A new run of the room, the same participant ids.
        assert now["incarnation"] != was["incarnation"] and now["rebuilds"] > was["rebuilds"], (name, now["history"][-5:])
        assert now["me"] == was["me"]
        # Whole from the first snapshot after the kill on, at every step.
        new = [entry for entry in now["history"] if entry["at"] > was["history"][-1]["at"]]
        first = next(i for i, entry in enumerate(new) if entry["what"].startswith(("meeting_rejoined", "rejoin")))
        for entry in new[first:]:
            assert [r["participant_id"] for r in entry["remotes"]] == [other_id], (name, entry)
        result.setdefault("first_snapshot", {})[name] = new[first]["what"]
        result.setdefault("reoffers", {})[name] = now["peers"][0]["reoffers"] - was["peers"][0]["reoffers"]
        result.setdefault("offers_sent", {})[name] = now["peers"][0]["offers_sent"] - was["peers"][0]["offers_sent"]
        # Only the impolite side (re-)offers; the polite side waits for its offer.
        if now["peers"][0]["polite"]:
            assert result["offers_sent"][name] == 0 and result["reoffers"][name] == 0, (name, now["peers"][0]["log"])
    # Frames keep being decoded on both sides.
    for _, page, _ in pages:
        frames = call_state(page)["peers"][0]["frames_decoded"]
        wait_js(page, "n => window.larkDebug.call().peers[0].frames_decoded > n + 10", arg=frames)
    result["socket_node_after_kill"] = {name: page.evaluate("window.larkDebug.socket.nodeId") for name, page, _ in pages}
    return result


def test_room_node_killed_mid_call(world):
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    meeting_id, owner = world["meeting"]
    # The browser whose node dies shows the connection banner, briefly (watched from inside
    # the page: it may be gone again before a screenshot could catch it).
    cut_off = alice if owner == 1 else bob
    cut_off.evaluate("window.larkBannerFlag = false; new MutationObserver((_, o) => { if (document.querySelector(\"[data-connection='reconnecting']\")) { window.larkBannerFlag = true; o.disconnect(); } }).observe(document.body, {subtree: true, childList: true, attributes: true})")
    result = kill_room_node(world, owner)
    FIGURES["killed_node"] = f"n{owner} (room owner, {'Alice' if owner == 1 else 'Bob'}'s node)"
    FIGURES["banner_seen"] = cut_off.evaluate("window.larkBannerFlag")
    FIGURES["media_flowing_after_kill_ms"] = result["media_flowing_ms"]
    FIGURES["members_after_kill_s"] = result["members_after_kill_s"]
    FIGURES["recovery_after_room_node_killed_ms"] = result["rosters_whole_ms"]
    FIGURES["kill_first_snapshot"] = result["first_snapshot"]
    FIGURES["kill_reoffers"] = result["reoffers"]
    FIGURES["socket_node_after_kill"] = result["socket_node_after_kill"]
    shot(alice, "09-alice-after-room-node-killed")
    shot(bob, "10-bob-after-room-node-killed")
    # The rebuilt room keeps the media states: Alice is still muted for Bob.
    expect(bob.locator("figure.tile[data-status]").filter(has_text="Alice")).to_have_attribute("data-audio", "off")
    # The socket of the browser whose node died moved to a node it learned from GET /v1/nodes.
    assert cut_off.evaluate("window.larkDebug.socket.nodeId") != f"n{owner}"


def test_host_ends_meeting_for_both(world):
    alice, bob = world["alice"], world["bob"]
    alice.get_by_role("button", name="End the meeting for everyone").click()
    for page in (alice, bob):
        expect(page.get_by_text("This meeting has ended.")).to_be_visible()
    shot(alice, "11-alice-meeting-ended")
    shot(bob, "12-bob-meeting-ended")
    # The clients refresh their 20 s tokens before they expire (counted since each page load;
    # a fast run may end before the first refresh was due, so wait for it).
    wait_js(alice, "window.larkDebug.refreshes() >= 1", timeout=30_000)
    FIGURES["token_refreshes"] = {"alice": alice.evaluate("window.larkDebug.refreshes()"), "bob": bob.evaluate("window.larkDebug.refreshes()")}
    errors = [line for line in world["console"] if "page error" in line]
    assert not errors, errors


def go(page: Page, path: str):
    """In-app navigation (the page's own node may be the one that was killed)."""
    page.evaluate("path => { history.pushState(null, '', path); dispatchEvent(new Event('lark:navigate')); }", path)


def test_lobby_admit_and_remove(world):
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    live = next(i for i in range(1, cluster.count + 1) if cluster.alive(i))
    token = alice.evaluate("JSON.parse(localStorage['lark.session']).accessToken")
    meeting = post_json(f"{cluster.url(live)}/v1/meetings", token, {"title": "Interviews", "lobby": True})["meeting"]
    go(alice, f"/meetings/{meeting['id']}")
    alice.get_by_role("button", name="Join meeting").click()
    wait_js(alice, "window.larkDebug.call().phase === 'in_call'")

    # Bob is not invited: he waits in the lobby until Alice admits him.
    go(bob, f"/meetings/{meeting['id']}")
    bob.get_by_role("button", name="Join meeting").click()
    expect(bob.get_by_text("Waiting for the host to let you in…")).to_be_visible()
    expect(alice.get_by_text("Bob is waiting")).to_be_visible()
    shot(alice, "13-alice-lobby")
    alice.get_by_role("button", name="Admit Bob").click()
    connected = "(c => c && c.phase === 'in_call' && c.peers.length === 1 && c.peers[0].connection === 'connected' && c.peers[0].frames_decoded > 10)(window.larkDebug.call())"
    wait_js(bob, connected)
    wait_js(alice, connected)

    # A reload mid-call (the app restarted): the reloaded side rejoins as the same participant
    # with new peer connections and offers; the other side replaces its connection.
    _, owner = world["meeting"]
    reloader = bob if owner == 1 else alice  # the one whose page's node is still alive
    before = call_state(alice if reloader is bob else bob)["peers"][0]["frames_decoded"]
    reloader.reload()
    reloader.get_by_role("button", name="Join meeting").click()
    wait_js(reloader, connected)
    wait_js(alice if reloader is bob else bob, "n => (c => c.peers.length === 1 && c.peers[0].connection === 'connected' && c.peers[0].frames_decoded > n + 10)(window.larkDebug.call())", arg=before)
    expect(alice.locator("figure.tile")).to_have_count(2)

    # The host removes him.
    bob_tile = alice.locator("figure.tile[data-status]").filter(has_text="Bob")
    bob_tile.hover()
    alice.get_by_role("button", name="Remove Bob").click()
    expect(bob.get_by_text("The host removed you from the meeting.")).to_be_visible()
    expect(alice.locator("figure.tile")).to_have_count(1)
    shot(bob, "14-bob-removed")


def restart_dead_nodes(cluster: Cluster):
    for i in range(1, cluster.count + 1):
        if not cluster.alive(i):
            cluster.start_node(i)
            wait_until(lambda: cluster._ready(i), 60, f"n{i} ready again")
            cluster.raft_ids[i] = http_json(cluster.url(i) + "/cluster/status")["raft_node_id"]
    cluster.wait_members(cluster.count, 60)


def leader_index(cluster: Cluster) -> int:
    live = next(i for i in cluster.procs if cluster.alive(i))
    leader = http_json(f"{cluster.url(live)}/cluster/status")["membership"]["leader"]
    return next(i for i, raft_id in cluster.raft_ids.items() if raft_id == leader)


def set_media_blocked(cluster: Cluster, blocked: bool):
    """Drops every packet on loopback but the cluster's own traffic (the nodes' client and
    cluster ports, Postgres, Redis): the browsers' WebRTC media and ICE checks stop, the
    signaling over the nodes goes on. In the test's private network namespace only."""
    subprocess.run(["iptables", "-F", "INPUT"], check=True)
    if blocked:
        ports = ",".join(["8000", "9000", cluster.database_url.rsplit(":", 1)[1].split("/")[0], cluster.redis_url.rsplit(":", 1)[1]])
        subprocess.run(["iptables", "-A", "INPUT", "-p", "udp", "-j", "DROP"], check=True)
        subprocess.run(["iptables", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "!", "--ports", ports, "-j", "DROP"], check=True)


@pytest.mark.skipif(not os.environ.get("LARK_NETNS") or not shutil.which("iptables"),
                    reason="needs the private network namespace of run.sh (as root) and iptables")
def test_pair_down_when_room_node_dies(world):
    """A pair whose media is down when its room's node dies: after the rebuild only the
    impolite side (Alice, who came first) offers; the polite side waits; the same peer
    connections come back, none closed or replaced."""
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    restart_dead_nodes(cluster)
    live = next(i for i in cluster.procs if cluster.alive(i))
    meeting = post_json(f"{cluster.url(live)}/v1/meetings", token_of(alice), {"title": "Pair down"})["meeting"]
    owner = cluster.owner_index(f"meeting:{meeting['id']}")
    for page in (alice, bob):  # Alice first: the lower order, the impolite side
        go(page, f"/meetings/{meeting['id']}")
        page.get_by_role("button", name="Join meeting").click()
        wait_js(page, "window.larkDebug.call().phase === 'in_call'")
    connected = "(c => c && c.phase === 'in_call' && c.peers.length === 1 && c.peers[0].connection === 'connected' && c.peers[0].frames_decoded > 10)(window.larkDebug.call())"
    wait_js(alice, connected)
    wait_js(bob, connected)
    pages = (("alice", alice), ("bob", bob))
    before = {name: call_state(page) for name, page in pages}
    assert before["alice"]["peers"][0]["polite"] is False and before["bob"]["peers"][0]["polite"] is True
    set_media_blocked(cluster, True)
    try:
        for _, page in pages:
            wait_js(page, "window.larkDebug.call().peers[0].connection !== 'connected'", timeout=40_000)
        down = {name: call_state(page) for name, page in pages}
        shot(bob, "16-bob-pair-down")
        killed_at = time.monotonic()
        cluster.kill(owner)
        for name, page in pages:
            wait_js(page, "old => (c => c.incarnation !== old && c.roster.length === 1 && c.roster[0].status === 'joined')(window.larkDebug.call())",
                    arg=before[name]["incarnation"], timeout=40_000)
        # Still down a while after the rebuild (a disconnected pair that gets its media back
        # within moments recovers by itself, needing no offer).
        time.sleep(4)
        rebuilt = {name: call_state(page) for name, page in pages}
    finally:
        set_media_blocked(cluster, False)
    for name, page in pages:
        wait_js(page, "n => (c => c.peers.length === 1 && c.peers[0].connection === 'connected' && c.peers[0].frames_decoded > n + 10)(window.larkDebug.call())",
                arg=down[name]["peers"][0]["frames_decoded"], timeout=40_000)
    reconnected_ms = round((time.monotonic() - killed_at) * 1000)
    after = {name: call_state(page) for name, page in pages}
    shot(bob, "17-bob-pair-back-after-rebuild")
    for name, _ in pages:
        assert after[name]["closed_links"] == before[name]["closed_links"], (name, after[name]["closed_links"])
        assert after[name]["peers"][0]["participant_id"] == before[name]["peers"][0]["participant_id"]
        assert after[name]["peers"][0]["replacements"] == before[name]["peers"][0]["replacements"], (name, after[name]["peers"][0]["log"])
    # The polite side never offered; the impolite side did, after the rebuild.
    assert after["bob"]["peers"][0]["offers_sent"] == before["bob"]["peers"][0]["offers_sent"], after["bob"]["peers"][0]["log"]
    assert after["alice"]["peers"][0]["offers_sent"] > down["alice"]["peers"][0]["offers_sent"], after["alice"]["peers"][0]["log"]
    FIGURES["pair_down_room_node_killed"] = {
        "killed_node": f"n{owner}",
        "reconnected_after_kill_ms": reconnected_ms,
        "alice_offers_while_down_and_after": after["alice"]["peers"][0]["offers_sent"] - down["alice"]["peers"][0]["offers_sent"],
        "alice_reoffers_by_the_rule": after["alice"]["peers"][0]["reoffers"] - down["alice"]["peers"][0]["reoffers"],
        "bob_offers": after["bob"]["peers"][0]["offers_sent"] - before["bob"]["peers"][0]["offers_sent"],
        "alice_log_tail": after["alice"]["peers"][0]["log"][-12:],
        "bob_log_tail": after["bob"]["peers"][0]["log"][-12:],
    }
    alice.get_by_role("button", name="End the meeting for everyone").click()
    for page in (alice, bob):
        expect(page.get_by_text("This meeting has ended.")).to_be_visible()


@pytest.mark.skipif(KILL_RUNS == 0, reason="set KILL_RUNS=N for N more kills of a room's node")
def test_room_node_killed_repeatedly(world):
    """The failover figures: KILL_RUNS calls, each with its room on the raft leader or on a
    follower (alternating), the room's node killed with the call up, then restarted."""
    cluster, alice, bob = world["cluster"], world["alice"], world["bob"]
    connected = "(c => c && c.phase === 'in_call' && c.peers.length === 1 && c.peers[0].connection === 'connected' && c.peers[0].frames_decoded > 10)(window.larkDebug.call())"
    runs = []
    for run in range(KILL_RUNS):
        restart_dead_nodes(cluster)
        want_leader = run % 2 == 0
        leader = leader_index(cluster)
        live = next(i for i in cluster.procs if cluster.alive(i))
        for _ in range(40):
            meeting = post_json(f"{cluster.url(live)}/v1/meetings", token_of(alice), {"title": f"Kill run {run + 1}"})["meeting"]
            owner = cluster.owner_index(f"meeting:{meeting['id']}")
            if (owner == leader) == want_leader:
                break
        else:
            raise AssertionError("no meeting landed where wanted in 40 tries")
        for page in (alice, bob):
            go(page, f"/meetings/{meeting['id']}")
            page.get_by_role("button", name="Join meeting").click()
            wait_js(page, "window.larkDebug.call().phase === 'in_call'")
        wait_js(alice, connected)
        wait_js(bob, connected)
        sockets = {name: page.evaluate("window.larkDebug.socket.nodeId") for name, page in (("alice", alice), ("bob", bob))}
        result = kill_room_node(world, owner)
        result["room_on"] = "leader" if owner == leader else "follower"
        result["sockets_before"] = sockets
        runs.append(result)
        print(f"kill run {run + 1}: {json.dumps(result)}")
        alice.get_by_role("button", name="End the meeting for everyone").click()
        for page in (alice, bob):
            expect(page.get_by_text("This meeting has ended.")).to_be_visible()
    shot(alice, "15-alice-after-kill-runs")
    FIGURES["kill_runs"] = runs
    for where in ("leader", "follower", "all"):
        worst = sorted(max(r["rosters_whole_ms"].values()) for r in runs if where in ("all", r["room_on"]))
        if worst:
            FIGURES[f"kill_rosters_whole_ms_{where}"] = {
                "runs": len(worst), "median": worst[len(worst) // 2] if len(worst) % 2 else (worst[len(worst) // 2 - 1] + worst[len(worst) // 2]) // 2,
                "max": worst[-1], "all": worst,
            }
