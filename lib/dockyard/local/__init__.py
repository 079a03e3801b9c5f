"""Running the whole platform on one machine (``dockyard up``)."""
