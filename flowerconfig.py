"""Flower's configuration file (``celery -A tasks flower --conf=flowerconfig.py``; also Flower's
default name, read from the current directory). Flower executes it and takes every global whose
name is one of its options as that option's value: so only private names here.

It makes Flower refuse to listen beyond loopback without authentication (webhooks.flower_guard).
"""

from webhooks import flower_guard as _flower_guard

_flower_guard.install()
