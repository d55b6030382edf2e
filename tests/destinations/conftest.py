"""Destination tests use the real local S3 servers (started once per test session)."""

from tests.servers.s3 import moto_server, seaweedfs_server

__all__ = ["moto_server", "seaweedfs_server"]
