"""Celery workers: the app (``app``), one thin task per stage (``tasks``), the ``worker`` command (``main``).

Job state and the stage run around the pipeline live in ``moodbgm.jobstore``."""
