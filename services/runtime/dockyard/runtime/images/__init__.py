"""The node's local image store: content-addressed blobs, unpacked layers, references, transfers."""
