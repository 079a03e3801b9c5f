"""The pure domain of Dockyard: no gRPC, HTTP or NATS below this package."""
