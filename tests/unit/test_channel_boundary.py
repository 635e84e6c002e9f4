"""The core meets chat systems only through the notification port and the policy route (issue 17):
no module of `sidecar` but the composition root imports a connector, and none names Teams' own
machinery (workflow URLs, Adaptive Cards). `via` strings are the policy route, so they may appear."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSITION_ROOT = ROOT / "sidecar" / "wiring.py"
DEMO_ROOT = ROOT / "sidecar" / "wiring_demo.py"  # the demo's and scenario replays' wiring: emulators only
TEAMS_MACHINERY = ("adaptive", "card.adaptive", "workflow_url", "powerautomate", "logic.azure")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_composition_root_imports_connectors() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in _imports(path) if name.startswith("connectors"))
                 for path in (ROOT / "sidecar").rglob("*.py") if path not in (COMPOSITION_ROOT, DEMO_ROOT)}
    assert {path: names for path, names in offenders.items() if names} == {}
    demo_imports = sorted(name for name in _imports(DEMO_ROOT) if name.startswith("connectors"))
    assert demo_imports and all(name.startswith("connectors.emulators") for name in demo_imports), demo_imports
    # the check can fail: the composition root does import the Teams connector
    assert any(name.startswith("connectors.teams") for name in _imports(COMPOSITION_ROOT))


def test_the_core_names_no_teams_machinery() -> None:
    found = {str(path.relative_to(ROOT)): word for path in (ROOT / "sidecar").rglob("*.py")
             if path != COMPOSITION_ROOT and path.name != "settings.py"
             for word in TEAMS_MACHINERY if word in path.read_text().lower()}
    assert found == {}
    assert "powerautomate" in (ROOT / "connectors" / "teams" / "notifier.py").read_text()  # the words are real
