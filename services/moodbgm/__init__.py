"""moodbgm: background music that follows the mood of what is said."""

__version__ = "0.1.0"
