"""Users an outside source vouches for (directory, OpenID provider, authenticating proxy), and
`group:` entries of allow lists, on every database backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mieruka.auth.accounts import Accounts
from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.auth.oidc import SignInFailed
from mieruka.auth.oidc_providers import Provider
from mieruka.auth.oidc_subjects import Subjects
from mieruka.core.access import Principal, Role, allowed
from mieruka.errors import NotFoundError, ValidationError
from mieruka.store.database import Database


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.close()


def test_first_login_creates_the_user_and_later_ones_follow_the_source(db: Database) -> None:
    audit = AuditLog(db)
    accounts = Accounts(db, audit=audit)
    ada = accounts.sign_in_external("ada", "ldap", "operator", ["lab", "lab-admins", "lab"], display_name="Ada L.")
    assert (ada.source, ada.role, ada.groups, ada.display_name) == (
        "ldap",
        Role.OPERATOR,
        ("lab", "lab-admins"),
        "Ada L.",
    )
    assert not ada.has_password and ada.synced_at is not None
    assert accounts.authenticate("ada", "") is None
    again = accounts.sign_in_external("ada", "ldap", "admin", ["lab"], address="10.0.0.5")
    assert again.id == ada.id and again.role is Role.ADMIN and again.groups == ("lab",)
    assert again.synced_at is not None and ada.synced_at is not None and again.synced_at >= ada.synced_at
    accounts.sign_in_external("ada", "ldap", "admin", ["lab"])  # same role: no entry
    entries = audit.query(AuditQuery(target="user:ada"))
    assert [(e.actor, e.action, e.address) for e in entries] == [
        ("ldap", "user.role", "10.0.0.5"),
        ("ldap", "user.add", ""),
    ]
    assert entries[0].detail == {"role": "admin", "was": "operator", "source": "ldap"}
    assert accounts.get_user("ada").principal("session").groups == frozenset({"lab"})


def test_a_name_of_another_source_is_refused(db: Database) -> None:
    accounts = Accounts(db)
    accounts.add_user("root", "admin", "long password")
    with pytest.raises(ValidationError, match="belongs to a local user"):
        accounts.sign_in_external("root", "ldap", "admin", [])
    assert accounts.get_user("root").source == "local"
    accounts.sign_in_external("bob", "oidc", "viewer", [])
    with pytest.raises(ValidationError, match="belongs to a oidc user"):
        accounts.sign_in_external("bob", "proxy", "viewer", [])
    with pytest.raises(ValidationError, match="password is kept there"):
        accounts.set_password("bob", "a new password")
    with pytest.raises(ValueError, match="not an outside source"):
        accounts.sign_in_external("carl", "local", "viewer", [])


def test_cut_off_ends_sessions_and_revokes_tokens(db: Database) -> None:
    accounts = Accounts(db)
    user = accounts.sign_in_external("ada", "ldap", "operator", [])
    session, _ = accounts.create_session(user, "10.0.0.1")
    _, secret = accounts.create_token("ada", "ci")
    assert accounts.session_user(session) is not None and accounts.check_token(secret) is not None
    assert accounts.cut_off("ada") == 1
    assert accounts.session_user(session) is None and accounts.check_token(secret) is None
    cut = accounts.get_user("ada")
    assert cut.source == "ldap"  # kept: jobs and audit entries name it
    assert cut.synced_at is None  # no longer vouched for: its subscriptions fall silent
    assert accounts.sign_in_external("ada", "ldap", "operator", []).synced_at is not None


def test_an_account_at_a_provider_signs_in_as_its_first_user_only(db: Database) -> None:
    """Subjects: a provider's account (`sub`) may sign in as the user it first signed in as, or as a
    user who has no account there yet; another account naming itself like a known user is refused,
    as is a known account calling itself by another user's name. Per provider."""
    accounts, subjects = Accounts(db), Subjects(db)
    corp = Provider(id="corp", name="Corp", issuer="https://id.example", client_id="mieruka")
    other = Provider(id="other", name="Other", issuer="https://other.example", client_id="mieruka")
    sue = accounts.sign_in_external("sue", "oidc", "viewer", [])
    val = accounts.sign_in_external("val", "oidc", "viewer", [])
    subjects.check(corp, "sub-1", "sue")  # nobody's yet
    subjects.link(corp, "sub-1", sue.id)
    subjects.link(corp, "sub-9", sue.id)  # the first is kept
    subjects.check(corp, "sub-1", "sue")
    with pytest.raises(SignInFailed) as renamed:
        subjects.check(corp, "sub-1", "val")
    assert (renamed.value.code, renamed.value.status_code) == ("sso_renamed", 403) and "'sue'" in renamed.value.message
    for stranger in ("sub-2", "sub-9"):
        with pytest.raises(SignInFailed) as taken:
            subjects.check(corp, stranger, "sue")
        assert (taken.value.code, taken.value.status_code) == ("sso_name_taken", 403)
    subjects.check(corp, "sub-2", "val")  # val has no account at corp yet
    subjects.check(corp, "sub-2", "nobody")
    subjects.check(other, "sub-1", "sue")  # another provider's sub-1 is another account
    subjects.link(other, "sub-1", val.id)
    with pytest.raises(SignInFailed, match="'val'"):
        subjects.check(other, "sub-1", "sue")
    accounts.remove_user("sue")  # its accounts go with it: sub-1 at corp may start afresh
    subjects.check(corp, "sub-1", "val")
    with pytest.raises(NotFoundError):
        accounts.get_user("sue")


def test_group_entries_of_allow_lists() -> None:
    member = Principal("ada", Role.VIEWER, "session", groups=frozenset({"lab-admins"}))
    other = Principal("bob", Role.OPERATOR, "session", groups=frozenset({"lab"}))
    assert allowed(member, ["group:lab-admins"]) and not allowed(other, ["group:lab-admins"])
    assert not allowed(other, ["group:"]) and not allowed(Principal("c", Role.VIEWER, "token"), ["group:lab"])
    assert allowed(other, ["group:lab-admins", "operator"])
    assert allowed(Principal("root", Role.ADMIN, "session"), ["group:lab-admins"])
    assert not allowed(Principal("lab-admins", Role.VIEWER, "session", groups=frozenset({"x"})), ["group:x-y"])


def test_disabled_accounts_of_each_directory_kind() -> None:
    from mieruka.auth.directory import _disabled

    assert _disabled({"userAccountControl": ["514"]})  # AD: NORMAL_ACCOUNT | ACCOUNTDISABLE
    assert not _disabled({"userAccountControl": ["512"]})
    assert _disabled({"pwdAccountLockedTime": ["000001010000Z"]})  # OpenLDAP ppolicy
    assert _disabled({"nsAccountLock": ["TRUE"]}) and not _disabled({"nsAccountLock": ["false"]})  # 389
    assert not _disabled({"userAccountControl": [], "pwdAccountLockedTime": []})


def test_names_a_proxy_sends() -> None:
    from mieruka.auth.proxy_auth import header_name

    assert header_name("EXAMPLE\\ada", True) == "ada" and header_name("ada@EXAMPLE.ORG", True) == "ada"
    assert header_name(" ada ", True) == "ada" and header_name("EXAMPLE\\ada", False) == "EXAMPLE\\ada"
