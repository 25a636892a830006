"""The account, audit, presence and login-attempt tables live in the job store's database and use
its plumbing: store.database.Database (one per process, shared with the stores, or one of their
own from a URL). `AuthDB` is its older name here."""

from __future__ import annotations

from ..store.database import Database

AuthDB = Database
