"""Accounts (users, API tokens, sessions, one-time login links), the audit log and presence,
stored in the job store's database (tables of migration 0004_auth)."""
