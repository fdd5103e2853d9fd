"""Watch streams: content type, initial state, resuming from a resourceVersion, selectors, timeouts."""

from __future__ import annotations

import asyncio
import json

CM = "/api/v1/namespaces/default/configmaps"


async def read_events(resp, count: int, timeout: float = 5.0) -> list[dict]:
    events = []
    while len(events) < count:
        line = await asyncio.wait_for(resp.content.readline(), timeout)
        if not line:
            break
        events.append(json.loads(line))
    return events


async def test_watch_streams_initial_state_then_changes(client):
    await client.post(CM, {"metadata": {"name": "before"}})
    async with client.session.get(client.url + CM, params={"watch": "true"}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
        [added] = await read_events(resp, 1)
        assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "before")
        await client.post(CM, {"metadata": {"name": "after"}})
        await client.patch(f"{CM}/after", {"data": {"k": "v"}})
        await client.delete(f"{CM}/after")
        events = await read_events(resp, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(events[1]["object"]["metadata"]["resourceVersion"])


async def test_watch_resumes_after_a_resource_version(client):
    _, listing = await client.get(CM)
    await client.post(CM, {"metadata": {"name": "missed"}})
    params = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"]}
    async with client.session.get(client.url + CM, params=params) as resp:
        [event] = await read_events(resp, 1)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "missed")


async def test_watch_filters_by_label_and_name_and_times_out(client):
    params = {"watch": "true", "labelSelector": "app=x", "timeoutSeconds": "1"}
    async with client.session.get(client.url + CM, params=params) as resp:
        await client.post(CM, {"metadata": {"name": "other", "labels": {"app": "y"}}})
        await client.post(CM, {"metadata": {"name": "mine", "labels": {"app": "x"}}})
        events = await read_events(resp, 5, timeout=3)  # the server ends the stream after 1 s
    assert [e["object"]["metadata"]["name"] for e in events] == ["mine"]


async def test_kmock_reactions_still_take_precedence(running, client):
    running.api["get /api/v1/namespaces/default/configmaps/flaky"] << 503
    async with client.session.get(client.url + CM + "/flaky") as resp:
        assert resp.status == 503
    status, body = await client.get(CM + "/absent")
    assert status == 404 and body["reason"] == "NotFound"
