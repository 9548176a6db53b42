"""Sends one Bulk request to a running server and validates the answer with
scim2-models' BulkResponse (scim2-tester has no Bulk checks).

    .venv/bin/python scripts/check_bulk.py TENANT_URL TOKEN

The request creates two users and a group whose members reference them by
bulkId (listed first: a forward reference), PATCHes a user through a
bulkId path, repeats a userName (409) and sends a stale version (412).
It exits non-zero on any mismatch. It leaves its users and group behind.
"""
import json
import sys
import urllib.error
import urllib.request
import uuid

from scim2_models import BulkResponse, Context, Error, Group, User

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


def user(name):
    return {"schemas": [USER], "userName": name, "active": True}


def main(base, token):
    tag = uuid.uuid4().hex[:8]
    a, b = f"bulk-a-{tag}@example.com", f"bulk-b-{tag}@example.com"
    ops = [
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": f"Bulk {tag}",
                  "members": [{"value": "bulkId:a"}, {"value": "bulkId:b"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": user(a)},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": user(b)},
        {"method": "PATCH", "path": "/Users/bulkId:a",
         "data": {"schemas": [PATCH], "Operations": [
             {"op": "replace", "path": "displayName", "value": "A"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user(a)},
        {"method": "PUT", "path": "/Users/bulkId:b", "version": 'W/"999"', "data": user(b)},
    ]
    req = urllib.request.Request(
        f"{base.rstrip('/')}/Bulk",
        data=json.dumps({"schemas": [BULK_REQUEST], "Operations": ops}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body = resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        sys.exit(f"Bulk answered {e.code}: {e.read().decode(errors='replace')}")
    if status != 200:
        sys.exit(f"Bulk answered {status}")
    parsed = BulkResponse[User | Group].model_validate(body, scim_ctx=Context.BULK_RESPONSE)
    got = [(o.method.value if hasattr(o.method, "value") else str(o.method), o.bulk_id, o.status)
           for o in parsed.operations or []]
    want = [("POST", "g", 201), ("POST", "a", 201), ("POST", "b", 201),
            ("PATCH", None, 200), ("POST", "dup", 409), ("PUT", None, 412)]
    problems = []
    if [(m.upper(), bid, s) for m, bid, s in got] != want:
        problems.append(f"operations {got}, expected {want}")
    for o in parsed.operations or []:
        ok = o.status is not None and o.status < 400
        if ok and not o.location:
            problems.append(f"{o.method} {o.bulk_id}: no location")
        if ok and o.method != "DELETE" and not o.version:
            problems.append(f"{o.method} {o.bulk_id}: no version")
        if not ok:
            err = o.response
            if isinstance(err, dict):
                err = Error.model_validate(err)
            if not isinstance(err, Error) or not err.detail:
                problems.append(f"{o.method} {o.bulk_id}: failure without a SCIM Error: {o.response!r}")
    # Statuses are strings on the wire, as in RFC 7644's examples.
    if any(not isinstance(o.get("status"), str) for o in body.get("Operations", [])):
        problems.append("status must be a string")
    if problems:
        for p in problems:
            print("FAIL", p)
        sys.exit(1)
    print(f"Bulk: {len(got)} operations, BulkResponse valid (scim2-models)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
