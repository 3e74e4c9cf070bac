"""A complete local system on embedded defaults: ``make run`` (``python -m local.run``).

moto's SQS server, the worker and Flower from the Procfile, a sample subscriber that
verifies signatures, and a demo that configures it and dispatches sample leads, all
run by honcho; Ctrl-C stops every one of them.
"""
