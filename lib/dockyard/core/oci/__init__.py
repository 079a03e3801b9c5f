"""The OCI image model every part of Dockyard shares: digests, media types, manifests, references.

Pure: parsing and validating documents and names, never I/O. Services and the CLI import these
modules directly (``from dockyard.core.oci.digest import Digest``); nothing is re-exported here.
"""
