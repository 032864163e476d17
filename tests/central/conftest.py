"""Fixtures for the staff accounts tests: a real store, the app, one user and one API token per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central import accounts
from central.api import create_app
from central.store import Store, open_store
from tests.central import STAFF_TOKEN

PASSWORD = {"viewer": "viewer-pass-Ao1", "technician": "technician-pass-Bo2", "admin": "admin-pass-Co3"}
SESSION_S = 3600.0
ORIGIN = "http://testserver"  # where TestClient's requests say they go: the page's origin in these tests


@dataclass
class Staffed:
    store: Store
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)  # role -> API token of that role's user

    def client(self, **kw: Any) -> TestClient:
        return TestClient(self.app, **kw)

    def login(self, username: str, password: str | None = None, client: TestClient | None = None) -> TestClient:
        client = client or self.client()
        response = client.post("/login", data={"username": username, "password": password or PASSWORD[username]},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
        client.headers["Origin"] = ORIGIN  # as a browser on central's page sends with every POST/PATCH/DELETE
        return client

    def audit(self, action: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE action = ?", [action]) if action else ("", [])
        return self.store.rows(f"SELECT * FROM audit {where} ORDER BY id", params)


@pytest.fixture
def staffed(tmp_path):
    """Users named after their role (viewer, technician, admin), each with the password PASSWORD[role] and an API token."""
    store = open_store(tmp_path / "central")
    env = Staffed(store, create_app(store=store, staff_token=STAFF_TOKEN, session_ttl_s=SESSION_S,
                                        public_origins=[ORIGIN]))
    for role in ("viewer", "technician", "admin"):
        accounts.add_user(store, role, role, PASSWORD[role])
        env.tokens[role] = accounts.issue_token(store, role, f"{role} script")[1]
    yield env
    store.close()
