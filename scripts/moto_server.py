"""Runs the moto AWS emulator on loopback, serving one request at a time.

`moto_server` serves requests on parallel threads, but moto's DynamoDB
backend takes no locks: concurrent TransactWriteItems race (its rollback
restores a snapshot of the whole table, erasing concurrent writes), which
real DynamoDB never does. Serving requests one by one gives conditional
writes and transactions DynamoDB's atomicity, so the concurrency tests test
this service and not the emulator.

    python scripts/moto_server.py PORT
"""
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

if __name__ == "__main__":
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    # Not threaded, hence HTTP/1.0: every request closes its connection, so
    # one idle keep-alive client cannot hold the single worker.
    run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
