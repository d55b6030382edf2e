"""Destination tests use the real local S3 and FTP servers (started once per test session)."""

from tests.servers.ftp import ftp_server, ftps_server
from tests.servers.s3 import moto_server, seaweedfs_server

__all__ = ["ftp_server", "ftps_server", "moto_server", "seaweedfs_server"]
