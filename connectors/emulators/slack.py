"""Loopback Slack Web API emulator for the unmodified ``WebClient(token, base_url=emu.url + "/api/")``.

Checked in slack_sdk 3.48's source: every call is a POST to ``/api/<method>``; chat.postMessage /
update / postEphemeral send a JSON body (token only in ``Authorization: Bearer``), the rest a form
body. Slack reports errors as HTTP 200 ``{"ok": false, "error": ...}``; rate limits are 429 + Retry-After.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.slack_blocks import block_errors

Args = dict[str, Any]


class SlackError(Exception):
    """Raised inside a method; rendered as Slack's error envelope."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None,
                 messages: list[str] | None = None, errors: list[str] | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.headers, self.messages = error, status, headers or {}, messages
        self.errors = errors  # invalid_blocks also lists the problems without the "[ERROR] " prefix

    def response(self) -> Response:
        extra: Args = {"errors": self.errors} if self.errors else {}
        if self.messages:
            extra["response_metadata"] = {"messages": self.messages}
        return Response(self.status, {"ok": False, "error": self.error, **extra}, self.headers)


class SlackEmulator(Emulator):
    service = "slack"
    team_id = "T0EMULATOR"
    bot_user_id = "U0SLABOT"
    bot_id = "B0SLABOT"

    def __init__(self, seed: int = 0, clock: Callable[[], datetime] | None = None,
                 tokens: Iterable[str] = ("xoxb-emulator",), post_interval: float | None = None) -> None:
        super().__init__(seed, clock)
        self.tokens = set(tokens)
        # Slack's guidance for chat.postMessage is about one message per second per channel. Off by
        # default so tests aren't throttled; measured on self.clock (virtual time), never wall time.
        self.post_interval = post_interval
        self._lock = threading.RLock()  # the server is threaded; all state changes go through it
        self.reset()
        # The SDK always POSTs, whatever http_verb says, so GET is not routed.
        self.router.add("POST", r"/api/(?P<method>[A-Za-z.]+)", self._dispatch)

    # ---- helpers for tests and the demo (plain Python, no HTTP) ----
    def reset(self) -> None:
        """Empty workspace, no faults, empty log: lets one running server serve many tests."""
        with self._lock:
            self.retry_after = 1  # seconds announced by the `rate_limit` fault (see fault_response)
            self._users: dict[str, Args] = {}
            self._conversations: dict[str, Args] = {}  # C… channels and D… DMs, same shape
            self._messages: list[Args] = []
            self._counter = self._last_ts = 0
            self._last_post: dict[str, float] = {}
            self.faults.clear()
            self.log.entries.clear()

    def add_user(self, email: str, name: str, real_name: str | None = None, *, deleted: bool = False,
                 tz: str = "America/New_York") -> str:
        with self._lock:
            uid, real_name = self._new_id("U"), real_name or name
            self._users[uid] = {"id": uid, "team_id": self.team_id, "name": name, "deleted": deleted,
                                "real_name": real_name, "is_bot": False, "tz": tz,
                                "profile": {"email": email, "real_name": real_name, "display_name": name}}
            return uid

    def deactivate_user(self, user_id: str) -> None:
        with self._lock:
            self._users[user_id]["deleted"] = True

    def add_channel(self, name: str, bot_member: bool = True, *, members: Iterable[str] = (),
                    private: bool = False) -> str:
        with self._lock:
            return str(self._add_conversation("C", name, set(members), None, bot_member, private)["id"])

    def add_message(self, channel: str, text: str, user: str) -> str:
        """Seed a message written by a person (the bot may not edit it: cant_update_message)."""
        with self._lock:
            return str(self._store(self._conversations[channel], user=user, text=text)["ts"])

    def messages(self, channel: str | None = None) -> list[Args]:
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages if channel in (None, m["channel"])]

    def export(self) -> list[Args]:
        """Every message with the kind of conversation it went to (channel, or DM to a person)."""
        with self._lock:
            keys = ("channel", "user", "ts", "text", "blocks", "metadata", "thread_ts", "ephemeral_to")
            convs = self._conversations
            return [{**{k: copy.deepcopy(m[k]) for k in keys}, "kind": convs[m["channel"]]["kind"],
                     "name": convs[m["channel"]]["name"], "recipient": convs[m["channel"]]["user"]}
                    for m in self._messages]

    def rate_limit_next(self, n: int = 1, retry_after: int = 1, method: str = "") -> None:
        """The next n calls (of `method`, e.g. "chat.postMessage", or of any method) get a 429."""
        self.retry_after = retry_after
        self.faults.add("rate_limit", next_n=n, path_prefix=f"/api/{method}")

    def fault_response(self, kind: str, request: Request) -> Response:
        if kind == "rate_limit":
            retry_after = {"Retry-After": str(self.retry_after)}
            return SlackError("ratelimited", status=429, headers=retry_after).response()
        if kind == "expired_session":
            # Slack has no sessions; the nearest real case, a revoked token, is HTTP 200 invalid_auth.
            return SlackError("invalid_auth").response()
        return SlackError("service_unavailable", status=503).response()

    # ---- HTTP plumbing ----
    def _dispatch(self, request: Request) -> Response:
        # Web API method "chat.postMessage" is served by `_api_chat_postMessage`, and so on.
        method: Callable[[Args], Args] | None = getattr(
            self, "_api_" + request.params["method"].replace(".", "_"), None)
        if method is None:
            return SlackError("unknown_method", status=404).response()
        try:
            args = self._args(request)
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else args.get("token")
            if token not in self.tokens:
                raise SlackError("invalid_auth" if token else "not_authed")
            with self._lock:
                return Response(200, {"ok": True, **method(args)})
        except SlackError as err:
            return err.response()

    @staticmethod
    def _args(request: Request) -> Args:
        args: Args = {k: v[0] for k, v in request.query.items()}
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            args.update((k, v[0]) for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items())
        elif content_type == "application/json":
            try:
                body = request.json()
            except ValueError:
                raise SlackError("invalid_json") from None
            # Slack ignores a token inside a JSON body: it must come in the Authorization header.
            args.update({k: v for k, v in body.items() if k != "token"} if isinstance(body, dict) else {})
        return args

    @staticmethod
    def _require(args: Args, *names: str) -> list[str]:
        missing = [name for name in names if not args.get(name)]
        if missing:  # newer Slack methods answer this way rather than with a per-field error
            raise SlackError("invalid_arguments",
                             messages=[f"[ERROR] missing required field: {name}" for name in missing])
        return [str(args[name]) for name in names]

    @staticmethod
    def _json_arg(args: Args, name: str, kind: type, error: str) -> Any:
        # Form bodies carry blocks/metadata as JSON strings, JSON bodies as structures: take both.
        value = args.get(name)
        try:
            value = json.loads(value) if isinstance(value, str) and value else value
        except ValueError:
            raise SlackError(error) from None
        if value not in (None, "") and not isinstance(value, kind):
            raise SlackError(error)
        return None if value == "" else value

    def _new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:08X}"

    def _next_ts(self) -> str:
        # Slack's ts is epoch seconds with 6 decimals, unique per message; bump by 1 µs on collision
        # so a frozen virtual clock still yields unique, increasing values.
        micros = max(int(self.clock().timestamp() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _add_conversation(self, prefix: str, name: str, members: set[str], user: str | None,
                          bot_member: bool = True, private: bool = True) -> Args:
        conv: Args = {"id": self._new_id(prefix), "kind": "channel" if prefix == "C" else "im", "name": name,
                      "members": members, "user": user, "bot_member": bot_member, "private": private}
        self._conversations[conv["id"]] = conv
        return conv

    def _store(self, conv: Args, *, user: str, text: str, **fields: Any) -> Args:
        message: Args = {"channel": conv["id"], "ts": self._next_ts(), "user": user, "text": text,
                         "blocks": None, "metadata": None, "thread_ts": None, "ephemeral_to": None,
                         "edited": None, **fields}
        self._messages.append(message)
        return message

    def _open_dm(self, user_id: str) -> tuple[Args, bool]:
        user = self._users.get(user_id)
        if user is None or user["deleted"]:  # user_disabled: conversations.open's documented error
            raise SlackError("user_not_found" if user is None else "user_disabled")
        existing = next((c for c in self._conversations.values() if c["user"] == user_id), None)
        if existing is not None:
            return existing, True
        return self._add_conversation("D", user["name"], {user_id}, user_id), False

    def _postable(self, args: Args) -> Args:
        channel = str(args.get("channel") or "")
        if channel.startswith(("U", "W")):
            # Posting to a user ID delivers into the bot's DM with that person, as Slack does.
            return self._open_dm(channel)[0]
        by_name = {c["name"]: c for c in self._conversations.values() if c["kind"] == "channel"}
        conv = self._conversations.get(channel) or by_name.get(channel.lstrip("#"))
        if conv is None or (conv["private"] and not conv["bot_member"]):
            raise SlackError("channel_not_found")  # private channels are invisible to non-members
        if not conv["bot_member"]:
            raise SlackError("not_in_channel")
        if conv["kind"] == "im" and self._users[conv["user"]]["deleted"]:
            # Best guess (undocumented): a deactivated person's DM is read-only, like an archived one.
            raise SlackError("is_archived")
        return conv

    def _blocks(self, args: Args) -> list[Any] | None:
        # Slack needs text or blocks (or attachments, which the emulator doesn't model).
        blocks: list[Any] | None = self._json_arg(args, "blocks", list, "invalid_blocks_format")
        if not args.get("text") and not blocks:
            raise SlackError("no_text")
        errors = block_errors(blocks or [])
        if errors:  # Block Kit limits (slack_blocks.py): the whole message is refused
            raise SlackError("invalid_blocks", errors=errors, messages=[f"[ERROR] {e}" for e in errors])
        return blocks

    def _throttle(self, channel_id: str) -> None:
        now, last = self.clock().timestamp(), self._last_post.get(channel_id)
        if self.post_interval is not None and last is not None and now - last < self.post_interval:
            wait = max(1, math.ceil(self.post_interval - (now - last)))
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(wait)})
        self._last_post[channel_id] = now

    def _public(self, message: Args) -> Args:
        out: Args = {"type": "message", "user": message["user"], "bot_id": self.bot_id,
                     "text": message["text"], "ts": message["ts"]}
        keys = ("blocks", "metadata", "thread_ts", "edited")
        return out | {k: copy.deepcopy(message[k]) for k in keys if message[k] is not None}

    # ---- Web API methods ----
    def _api_auth_test(self, args: Args) -> Args:
        return {"url": "https://emulator.slack.com/", "team": "Emulated Workspace", "user": "sla-bot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id}

    def _api_users_lookupByEmail(self, args: Args) -> Args:
        (email,) = self._require(args, "email")
        for user in self._users.values():
            # Documented Slack behaviour: a deactivated user is users_not_found here.
            if user["profile"]["email"].lower() == email.lower() and not user["deleted"]:
                return {"user": copy.deepcopy(user)}
        raise SlackError("users_not_found")

    def _api_users_info(self, args: Args) -> Args:
        (user_id,) = self._require(args, "user")
        if user_id not in self._users:  # a deactivated user is still returned, with deleted: true
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(self._users[user_id])}

    def _api_conversations_open(self, args: Args) -> Args:
        users = [u.strip() for u in self._require(args, "users")[0].split(",") if u.strip()]
        if len(users) != 1:
            raise SlackError("invalid_arguments", messages=["[ERROR] emulator supports 1:1 DMs only"])
        conv, existed = self._open_dm(users[0])
        return {"channel": {"id": conv["id"]}, **({"no_op": True, "already_open": True} if existed else {})}

    def _api_chat_postMessage(self, args: Args) -> Args:
        conv = self._postable(args)
        blocks = self._blocks(args)
        metadata = self._json_arg(args, "metadata", dict, "invalid_metadata_format")
        self._throttle(conv["id"])
        message = self._store(conv, user=self.bot_user_id, text=str(args.get("text") or ""), blocks=blocks,
                              metadata=metadata, thread_ts=args.get("thread_ts") or None)
        return {"channel": conv["id"], "ts": message["ts"], "message": self._public(message)}

    def _api_chat_update(self, args: Args) -> Args:
        channel, ts = self._require(args, "channel", "ts")
        if channel not in self._conversations:
            raise SlackError("channel_not_found")
        message = next((m for m in self._messages if m["channel"] == channel and m["ts"] == ts
                        and m["ephemeral_to"] is None), None)  # ephemeral messages can't be edited
        if message is None or message["user"] != self.bot_user_id:  # the bot can only edit its own
            raise SlackError("message_not_found" if message is None else "cant_update_message")
        blocks = self._blocks(args)
        if args.get("text") is not None:
            message["text"] = str(args["text"])
        if "blocks" in args:  # Slack keeps the previous blocks unless the update sends some (even [])
            message["blocks"] = blocks
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": message["text"], "message": self._public(message)}

    def _api_chat_postEphemeral(self, args: Args) -> Args:
        conv = self._postable(args)
        (user,) = self._require(args, "user")
        if user not in conv["members"]:
            raise SlackError("user_not_in_channel")
        message = self._store(conv, user=self.bot_user_id, text=str(args.get("text") or ""),
                              blocks=self._blocks(args), ephemeral_to=user)
        return {"message_ts": message["ts"]}
