"""Fixtures shared by the crm-http tests."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

ClientFor = Callable[[FastAPI], httpx.AsyncClient]


@pytest.fixture
def client_for() -> ClientFor:
    """In-process HTTP client for an app; unhandled errors come back as the app's 500 response."""

    def make(app: FastAPI) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    return make
