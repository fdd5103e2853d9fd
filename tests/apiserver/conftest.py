"""Fixtures: an emulator on a free port, with an aiohttp session pointed at it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml

from shoal.fleet.apiserver import serve

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "inferenceservice.yaml"


class Client:
    """A thin JSON client for the tests: every call returns (status, body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session, self.url = session, url

    async def call(self, method: str, path: str, body=None, content_type: str = "application/json", **params):
        headers = {"Content-Type": content_type}
        async with self.session.request(method, self.url + path, json=body, headers=headers, params=params) as resp:
            return resp.status, await resp.json()

    async def get(self, path, **params):
        return await self.call("GET", path, **params)

    async def post(self, path, body, **params):
        return await self.call("POST", path, body, **params)

    async def put(self, path, body):
        return await self.call("PUT", path, body)

    async def patch(self, path, body, content_type="application/merge-patch+json"):
        return await self.call("PATCH", path, body, content_type)

    async def delete(self, path, body=None):
        return await self.call("DELETE", path, body)


@pytest.fixture
async def running(tmp_path):
    async with serve(kubeconfig=tmp_path / "kubeconfig") as running:
        yield running


@pytest.fixture
async def client(running):
    async with aiohttp.ClientSession() as session:
        yield Client(session, running.url)


@pytest.fixture
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture
async def with_crd(client, crd):
    status, body = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201, body
    return body
