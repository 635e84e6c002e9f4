"""Block Kit limits the Slack emulator enforces on chat.postMessage / update / postEphemeral.

Slack refuses the whole message when one limit is broken: HTTP 200 with
`{"ok": false, "error": "invalid_blocks", "errors": [...], "response_metadata": {"messages":
["[ERROR] ..."]}}`, each message naming the limit and a JSON pointer, e.g. "must be less than 3001
characters [json-pointer:/blocks/0/text/text]" or "no more than 25 items allowed
[json-pointer:/blocks/1/elements]" (real answers quoted in adobe/spacecat-api-service#176,
incidentbot/incidentbot#328 and brainxx.org "Fixing Slack API Error: Message Limit Exceeded").
The limits, from the Block Kit reference (docs.slack.dev/reference/block-kit: header block,
section block, actions block, button element, confirmation dialog object):
- 50 blocks per message; any text object 3000 characters;
- header text 150; section text 3000, at most 10 fields of 2000 each;
- actions at most 25 elements; context at most 10 elements;
- button text 75, value 2000, url 3000; action_id and block_id 255;
- confirmation dialog title 100, text 300, confirm/deny 30.
Slack may list extra "failed to match all allowed schemas" lines; the emulator gives the specific
line(s) only.
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
TEXT_OBJECT = 3000
HEADER_TEXT = 150
SECTION_TEXT = 3000
SECTION_FIELDS, FIELD_TEXT = 10, 2000
ACTIONS_ELEMENTS = 25
CONTEXT_ELEMENTS = 10
BUTTON_TEXT, BUTTON_VALUE, BUTTON_URL = 75, 2000, 3000
ID_LENGTH = 255
CONFIRM = {"title": 100, "text": 300, "confirm": 30, "deny": 30}


def block_errors(blocks: list[Any]) -> list[str]:
    """Slack's error lines for `blocks` (empty when Slack would take them)."""
    errors: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(_too_many(MAX_BLOCKS, "/blocks"))
    for index, block in enumerate(blocks):
        if isinstance(block, dict):
            errors += _block(block, f"/blocks/{index}")
    return errors


def _too_long(limit: int, pointer: str) -> str:
    return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"


def _too_many(limit: int, pointer: str) -> str:
    return f"no more than {limit} items allowed [json-pointer:{pointer}]"


def _string(value: Any, limit: int, pointer: str) -> list[str]:
    return [_too_long(limit, pointer)] if isinstance(value, str) and len(value) > limit else []


def _text(obj: Any, limit: int, pointer: str) -> list[str]:
    """A text object ({"type": "plain_text"|"mrkdwn", "text": ...}) whose text may hold `limit`."""
    return _string(obj.get("text"), limit, f"{pointer}/text") if isinstance(obj, dict) else []


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _block(block: dict[str, Any], at: str) -> list[str]:
    kind = block.get("type")
    errors = _string(block.get("block_id"), ID_LENGTH, f"{at}/block_id")
    if kind == "header":
        errors += _text(block.get("text"), HEADER_TEXT, f"{at}/text")
    elif kind == "section":
        errors += _text(block.get("text"), SECTION_TEXT, f"{at}/text")
        fields = _items(block.get("fields"))
        if len(fields) > SECTION_FIELDS:
            errors.append(_too_many(SECTION_FIELDS, f"{at}/fields"))
        for index, field in enumerate(fields):
            errors += _text(field, FIELD_TEXT, f"{at}/fields/{index}")
        if isinstance(block.get("accessory"), dict):
            errors += _element(block["accessory"], f"{at}/accessory")
    elif kind == "actions":
        elements = _items(block.get("elements"))
        if len(elements) > ACTIONS_ELEMENTS:
            errors.append(_too_many(ACTIONS_ELEMENTS, f"{at}/elements"))
        for index, element in enumerate(elements):
            if isinstance(element, dict):
                errors += _element(element, f"{at}/elements/{index}")
    elif kind == "context":
        elements = _items(block.get("elements"))
        if len(elements) > CONTEXT_ELEMENTS:
            errors.append(_too_many(CONTEXT_ELEMENTS, f"{at}/elements"))
        for index, element in enumerate(elements):
            errors += _text(element, TEXT_OBJECT, f"{at}/elements/{index}")
    return errors


def _element(element: dict[str, Any], at: str) -> list[str]:
    errors = _string(element.get("action_id"), ID_LENGTH, f"{at}/action_id")
    if element.get("type") == "button":
        errors += _text(element.get("text"), BUTTON_TEXT, f"{at}/text")
        errors += _string(element.get("value"), BUTTON_VALUE, f"{at}/value")
        errors += _string(element.get("url"), BUTTON_URL, f"{at}/url")
    confirm = element.get("confirm")
    if isinstance(confirm, dict):
        for part, limit in CONFIRM.items():
            errors += _text(confirm.get(part), limit, f"{at}/confirm/{part}")
    return errors
