"""Validates change events (JSON lines) against infra/events/v1/<type>.json.

    python scripts/validate_events.py EVENTS.jsonl

Exits non-zero naming the first event that does not match its schema, or
whose type has no schema.
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "infra" / "events" / "v1"
BASE = "https://scim-provisioning.invalid/events/v1/"

resources = []
for path in SCHEMAS.glob("*.json"):
    doc = json.loads(path.read_text(encoding="utf-8"))
    resources.append((BASE + path.name, Resource.from_contents(doc)))
registry = Registry().with_resources(resources)

checked = 0
for line in pathlib.Path(sys.argv[1]).read_text(encoding="utf-8").splitlines():
    if not line.strip():
        continue
    event = json.loads(line)
    uri = BASE + f"{event.get('type')}.json"
    try:
        schema = registry.contents(uri)
    except Exception:
        sys.exit(f"no schema for event type {event.get('type')!r}")
    validator = Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(event), key=lambda e: list(e.path))
    if errors:
        sys.exit(f"event {event.get('id')} ({event.get('type')}) does not match its schema: {errors[0].message} at {list(errors[0].path)}")
    checked += 1
print(f"{checked} events match their schemas")
