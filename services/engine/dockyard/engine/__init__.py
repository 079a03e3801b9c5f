"""dockyard-engine: docker's Engine API over the client library, for docker's own tools."""
