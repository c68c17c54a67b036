"""``edgematch webhook``: bucket notifications over HTTP, for stores that cannot send to SQS.

MinIO's webhook target and Ceph RGW's HTTP endpoint POST one notification a request; this
process feeds them into the path SQS events take (the same parsing, the same ``ingest`` /
``ingest_many`` tasks on the live lane, the same backpressure and dead letters)::

    POST /  ──► auth.py     token (Bearer, or Basic's password), constant time      401
            ──► app.py      Content-Length, then the body read up to the limit      413
            ──► door.py     events.parse_message + select; unreadable → dead letter 400
            ──► enqueuer.py one thread: admission at the high-water mark (admission.py),
                            then the ingest tasks of every request waiting, at once   503
            ◄── 200 only once the request's ingest work is in the broker

The sender keeps what was refused with a 503 (MinIO's ``queue_dir``, a persistent Ceph
topic) and sends it again; ingest's idempotency makes a repeat harmless.
``server.py`` runs the app on uvicorn.
"""
