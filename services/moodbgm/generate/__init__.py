"""Music generation backends behind one protocol (see ``base``)."""
