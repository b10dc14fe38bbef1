"""Celery workers: the app (``app``), one thin task per stage (``tasks``), job state in Redis (``store``)."""
