"""Runs the moto AWS emulator on loopback, serving one request at a time.

Three departures from `moto_server`, all about DynamoDB:

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
* moto answers every Query by sorting all the items of the table and then
  walking the partition from its start to the ExclusiveStartKey: O(table)
  per page, seconds per call once a table holds 100,000 items. Here a
  table-key Query sees only its partition, kept sorted between writes,
  and starts at the ExclusiveStartKey by bisection; moto's own code still
  applies conditions, filters, projections, limits and LastEvaluatedKey.

    python scripts/moto_server.py PORT
"""
import bisect
import copy
import inspect
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

_query = Table.query
_query_params = inspect.signature(_query)
_put_item = Table.put_item
_delete_item = Table.delete_item


def _forget_partitions(table):
    table.__dict__.pop("_sorted_partitions", None)


def put_item(self, *args, **kwargs):
    _forget_partitions(self)
    return _put_item(self, *args, **kwargs)


def delete_item(self, *args, **kwargs):
    _forget_partitions(self)
    return _delete_item(self, *args, **kwargs)


def _sorted_partition(table, hash_key):
    """The partition's items in sort-key order and their sort keys, or None
    when the partition's sort keys are not all strings."""
    cache = table.__dict__.setdefault("_sorted_partitions", {})
    hit = cache.get(hash_key)
    if hit is None:
        items = list(table.items.get(hash_key, {}).values())
        if any(i.range_key is None or i.range_key.type != "S" for i in items):
            return None
        items.sort(key=lambda i: i.range_key.value)
        hit = (items, [i.range_key.value for i in items])
        cache[hash_key] = hit
    return hit


def query(self, hash_key, *args, **kwargs):
    bound = _query_params.bind(self, hash_key, *args, **kwargs)
    a = bound.arguments
    if a.get("index_name") or not self.range_key_attr or hash_key is None:
        return _query(self, hash_key, *args, **kwargs)
    part = _sorted_partition(self, hash_key)
    if part is None:
        return _query(self, hash_key, *args, **kwargs)
    items, keys = part
    start = a.get("exclusive_start_key")
    if start is not None:
        sk = (start.get(self.range_key_attr) or {}).get("S")
        if sk is None:
            return _query(self, hash_key, *args, **kwargs)
        # Only what lies after the start key in the scan's direction.
        if a.get("scan_index_forward", True) is False:
            items = items[: bisect.bisect_left(keys, sk)]
        else:
            items = items[bisect.bisect_right(keys, sk):]
        a["exclusive_start_key"] = None
    self.all_items = lambda: items
    try:
        return _query(*bound.args, **bound.kwargs)
    finally:
        del self.all_items


Table.put_item = put_item
Table.delete_item = delete_item
Table.query = query

if __name__ == "__main__":
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    # Not threaded, hence HTTP/1.0: every request closes its connection, so
    # one idle keep-alive client cannot hold the single worker.
    run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
