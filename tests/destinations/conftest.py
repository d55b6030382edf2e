"""Destination tests use the real local S3, FTP, SFTP, Azure Blob and WebDAV servers and local Google Drive,
Dropbox, OneDrive and Box servers (started once per test session)."""

from tests.servers.azurite import azurite_server, azurite_tls_server
from tests.servers.box import box_server
from tests.servers.dropbox import dropbox_server, dropbox_server_session
from tests.servers.ftp import ftp_server, ftps_server
from tests.servers.google_drive import google_server
from tests.servers.onedrive import onedrive_server
from tests.servers.s3 import moto_server, seaweedfs_server
from tests.servers.sftp import client_keys, own_sftp_server, sftp_server
from tests.servers.webdav import nextcloud_style_webdav_server, webdav_server

__all__ = ["ftp_server", "ftps_server", "moto_server", "seaweedfs_server"]
__all__ += ["client_keys", "own_sftp_server", "sftp_server"]
__all__ += ["azurite_server", "azurite_tls_server"]
__all__ += ["nextcloud_style_webdav_server", "webdav_server"]
__all__ += ["google_server", "onedrive_server"]
__all__ += ["box_server"]
__all__ += ["dropbox_server", "dropbox_server_session"]
