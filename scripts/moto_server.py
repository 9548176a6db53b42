"""Runs the moto AWS emulator on loopback, serving one request at a time.

Two departures from `moto_server`, both about DynamoDB transactions:

* `moto_server` serves requests on parallel threads, but moto's DynamoDB
  backend takes no locks: concurrent TransactWriteItems race (a rollback
  restores a snapshot of the whole table, erasing concurrent writes), which
  real DynamoDB never does. Serving requests one by one gives conditional
  writes and transactions DynamoDB's atomicity, so concurrency tests test
  this service and not the emulator.
* moto snapshots a transaction's whole table with `copy.deepcopy` before
  every TransactWriteItems, which makes each transaction cost O(table size)
  (seconds once a table holds 100,000 items). Here only the items the
  transaction touches are snapshotted, and restored if it is cancelled.

    python scripts/moto_server.py PORT
"""
import copy
import sys
import types

from werkzeug.serving import run_simple

import moto.dynamodb.models as ddb_models
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

# moto's transact_write_items deep-copies whole tables through the module's
# `copy`; hand it tables as they are, and snapshot items ourselves instead.
_copy = types.SimpleNamespace(**{n: getattr(copy, n) for n in dir(copy) if not n.startswith("__")})
_copy.deepcopy = lambda x, memo=None: x if isinstance(x, Table) else copy.deepcopy(x, memo)
ddb_models.copy = _copy

_transact = ddb_models.DynamoDBBackend.transact_write_items


def _item_key(backend, op):
    table = backend.get_table(op["TableName"])
    if "Key" in op:
        return op["Key"]
    attrs = op["Item"]
    return {k: attrs[k] for k in (table.hash_key_attr, table.range_key_attr) if k}


def transact_write_items(self, transact_items):
    snapshot = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        name = op.get("TableName")
        if name not in self.tables:
            continue
        try:
            key = _item_key(self, op)
            current = self.get_item(name, key)
        except Exception:  # malformed input: moto reports it below
            continue
        snapshot.append((name, key, current.to_json()["Attributes"] if current else None))
    try:
        return _transact(self, transact_items)
    except Exception:
        for name, key, attrs in reversed(snapshot):
            if attrs is None:
                self.delete_item(name, key)
            else:
                self.put_item(name, attrs)
        raise


ddb_models.DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    # Not threaded, hence HTTP/1.0: every request closes its connection, so
    # one idle keep-alive client cannot hold the single worker.
    run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
