"""Dashboard users from settings, signed session cookies and their CSRF tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sidecar.web.auth import Role, Sessions, User, UsersError, find_user, parse_users

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
TOKEN_A, TOKEN_B = "a" * 20, "b" * 20


def test_users_roles_and_the_admin_token() -> None:
    users = parse_users(f"alice:manager:{TOKEN_A}, bob:VIEWER:{TOKEN_B}", admin_token="c" * 24)
    assert find_user(users, TOKEN_A) == User("alice", Role.MANAGER)
    assert find_user(users, TOKEN_B) == User("bob", Role.VIEWER)
    assert find_user(users, "c" * 24) == User("admin", Role.ADMIN)
    assert find_user(users, "nope") is None and find_user(users, "") is None
    assert Role.ADMIN > Role.MANAGER > Role.VIEWER


@pytest.mark.parametrize(("text", "words"), [
    ("alice", "write name:role:token"),
    (f"alice:boss:{TOKEN_A}", "role 'boss' is not viewer, manager or admin"),
    ("alice:viewer:short", "shorter than 16 characters"),
    (f"alice:viewer:{TOKEN_A},bob:viewer:{TOKEN_A}", "entry 2 (bob): the same token is given to two users"),
])
def test_bad_user_lists_name_the_entry_and_never_the_token(text: str, words: str) -> None:
    with pytest.raises(UsersError) as caught:
        parse_users(text)
    assert words in str(caught.value)
    assert TOKEN_A not in str(caught.value) and "short" not in str(caught.value).split("shorter")[0]


def test_cookies_are_signed_expire_and_carry_a_csrf_token() -> None:
    sessions = Sessions("secret")
    cookie = sessions.issue(User("alice", Role.MANAGER), NOW)
    read = sessions.read(cookie, NOW + timedelta(hours=1))
    assert read is not None and read[0] == User("alice", Role.MANAGER) and len(read[1]) == 64
    assert sessions.read(cookie, NOW + timedelta(hours=1))[1] == read[1]  # type: ignore[index]
    assert sessions.read(cookie, NOW + Sessions.LIFETIME) is None  # expired
    assert Sessions("other secret").read(cookie, NOW) is None  # signed with another key
    signature = cookie.rpartition(".")[2]
    forged = Sessions("secret").issue(User("alice", Role.ADMIN), NOW).rpartition(".")[0] + "." + signature
    assert sessions.read(forged, NOW) is None  # a promoted payload with the old signature
    assert sessions.read("garbage", NOW) is None and sessions.read(None, NOW) is None
    other = sessions.read(sessions.issue(User("alice", Role.MANAGER), NOW), NOW)
    assert other is not None and other[1] != read[1]  # each login has its own CSRF token
