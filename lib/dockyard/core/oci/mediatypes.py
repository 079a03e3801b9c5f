"""Every OCI and Docker media type Dockyard reads or writes, spelled once."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # the config of an artifact that has none
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Schema 1 is refused everywhere; it is named only to say so.
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
"""Manifests of one image (a config and layers)."""
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
"""Manifests that list other manifests (one per platform, or a build cache's step images)."""
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES

TO_OCI_LAYER = {DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP}
"""Docker's layer media types and their OCI equivalents (a committed image's manifest is OCI)."""
