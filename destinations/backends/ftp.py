"""The ftp destination type: FTP and FTPS (explicit TLS, AUTH TLS) on ftplib, here, and SFTP on paramiko, in
sftp.py (docs/destinations.md "Types"). One type, as users know these servers: one config, `protocol` picks.

For FTP and FTPS, every socket passes the outbound gate (apertur/http.py) and is put under the attempt's deadline:
the control connection is made to the address `ensure_host_allowed` checked, and each data connection is checked and
registered too. A file is written under a temporary name in its final folder and renamed once complete, so a
transfer cut half-way never leaves a partial file under the final name.
"""

import base64
import contextlib
import ftplib
import ipaddress
import re
import socket
import ssl
from functools import cached_property
from typing import Any, Literal

from django.conf import settings
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from apertur.deadlines import register_socket
from apertur.http import HostNotAllowed, check_connected_socket, ensure_host_allowed
from destinations.backends.base import (
    BackendConfig,
    DeliveryError,
    DeliveryReceipt,
    DestinationBackend,
    StagedImage,
)
from destinations.backends.sftp import PrivateKeyError, SftpTransfer, load_private_key
from destinations.paths import DEFAULT_PATH_TEMPLATE, image_path, normalise_path

BLOCK_SIZE = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 30
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
LOGIN_REFUSED = "530"
FTP_PORT, SFTP_PORT = 21, 22
SFTP_ONLY = ("privateKey", "passphrase", "hostKeyFingerprint")
FINGERPRINT = re.compile(r"SHA256:(?P<digest>[A-Za-z0-9+/]{43})=?")


class FtpConfig(BackendConfig):
    # First: the default port and the fields allowed depend on it (a validator sees the fields declared before its own).
    protocol: Literal["ftp", "ftps", "sftp"] = "ftp"
    host: str
    port: int = Field(default=None, ge=1, le=65535, validate_default=True)  # None: the protocol's own
    username: str
    password: SecretStr | None = None
    remotePath: str = ""
    # sftp only (docs/api.md "Destination types").
    privateKey: SecretStr | None = None
    passphrase: SecretStr | None = None
    hostKeyFingerprint: str | None = None
    _signing_key: Any = PrivateAttr(default=None)

    @field_validator("host")
    @classmethod
    def host_is_a_name_or_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not HOST_NAME.fullmatch(value):
                raise ValueError("must be a host name or an IP address, without a scheme, port or path") from None
        return value

    @field_validator("port", mode="before")
    @classmethod
    def default_port_of_the_protocol(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return SFTP_PORT if info.data.get("protocol") == "sftp" else FTP_PORT
        return value

    @field_validator("username")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("username", "remotePath")
    @classmethod
    def single_line(cls, value: str) -> str:
        # FTP commands are lines: a line break would end the command and start another.
        if re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError("must not contain line breaks or control characters")
        return value

    @field_validator("password")
    @classmethod
    def password_single_line(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Sent as an FTP command line (PASS) for ftp and ftps: a line break would end it and start another command.
        # SFTP sends it as a length-prefixed string, where any character is the password's own.
        sent_as_a_line = info.data.get("protocol") != "sftp"
        if value is not None and sent_as_a_line and re.search(r"[\x00-\x1f\x7f]", value.get_secret_value()):
            raise ValueError("must not contain line breaks or control characters (for ftp and ftps)")
        return value

    @field_validator("hostKeyFingerprint")
    @classmethod
    def sha256_fingerprint(cls, value: str | None) -> str | None:
        """As `ssh-keygen -lf` prints it; written back in paramiko's (the same) form, so the two compare as text."""
        if value is None:
            return None
        match = FINGERPRINT.fullmatch(value)
        if match is None:
            raise ValueError("must be a SHA256 fingerprint as ssh-keygen -lf prints it: SHA256:<43 base64 characters>")
        digest = base64.b64decode(match["digest"] + "=")
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @model_validator(mode="after")
    def credentials(self) -> "FtpConfig":
        """A password, or (sftp) a private key that opens with its passphrase; both may be given for sftp. Checked
        here rather than in field validators, whose errors would quote the key."""
        problems: list[tuple[str, str]] = []
        if self.protocol != "sftp":
            problems += [(name, "only with protocol sftp") for name in SFTP_ONLY if getattr(self, name) is not None]
        elif self.privateKey is not None:
            try:
                self._signing_key = load_private_key(self.secret_value("privateKey"), self.secret_value("passphrase"))
            except PrivateKeyError as error:
                problems.append(("privateKey", str(error)))
        elif self.passphrase is not None:
            problems.append(("passphrase", "only with a privateKey"))
        if self.password is None and (self.privateKey is None or self.protocol != "sftp"):
            required = "required unless a privateKey is given" if self.protocol == "sftp" else "Field required"
            problems.append(("password", required))
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", "Value error, {error}", {"error": message}),
                        loc=(name,),
                        input=None,  # never the key
                    )
                    for name, message in problems
                ],
            )
        return self

    @property
    def signing_key(self) -> Any:
        """The decrypted `privateKey` as paramiko uses it; None without one."""
        return self._signing_key


class _GuardedTransfers:
    """ftplib's data connections under the gate and the deadline.

    In passive mode ftplib connects the data channel to the control connection's peer, ignoring the address in the
    PASV reply (`trust_server_pasv_ipv4_address` is False): a reply naming another host (the FTP bounce trick, or a
    private address behind NAT) cannot send us elsewhere. The socket's peer is checked anyway before it is used.
    """

    user_host: str
    trust_server_pasv_ipv4_address = False  # ftplib's default, relied upon here: stated so it cannot drift

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        connection, size = super().ntransfercmd(cmd, rest)  # type: ignore[misc]
        register_socket(check_connected_socket(connection, host=self.user_host))
        return connection, size


class _DeadlineTLSContext(ssl.SSLContext):
    """Puts each TLS socket ftplib makes (the control connection after AUTH TLS, every protected data connection)
    under the attempt's deadline before its handshake: wrapping detaches the plain socket, so registering that one
    would leave a server that stalls the handshake bounded only by the per-read timeout."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        kwargs["do_handshake_on_connect"] = False
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        register_socket(wrapped)
        wrapped.do_handshake()
        return wrapped


def _tls_context() -> ssl.SSLContext:
    # As ssl.create_default_context does for a client. Verification is never switched off;
    # APERTUR_OUTBOUND_CA_BUNDLE trusts a private CA.
    context = _DeadlineTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.APERTUR_OUTBOUND_CA_BUNDLE:
        context.load_verify_locations(cafile=settings.APERTUR_OUTBOUND_CA_BUNDLE)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


class GuardedFTP(_GuardedTransfers, ftplib.FTP):
    pass


class GuardedFTPTLS(_GuardedTransfers, ftplib.FTP_TLS):
    pass


class FtpBackend(DestinationBackend):
    type = "ftp"
    Config = FtpConfig
    config: FtpConfig

    def remote_path(self, image: StagedImage) -> str:
        return normalise_path(f"{self.config.remotePath}/{image_path(DEFAULT_PATH_TEMPLATE, image)}")

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        if self.config.protocol == "sftp":
            return self._sftp.deliver(image, path)
        folder, _, name = path.rpartition("/")
        temporary = f"{folder}/.{name}.{image.delivery_id}.part".lstrip("/")
        try:
            ftp = self._connect()
            try:
                self._start_session(ftp)
                self._make_folders(ftp, folder)
                sent = 0

                def count(block: bytes) -> None:
                    nonlocal sent
                    sent += len(block)

                with image.open() as stream:
                    ftp.storbinary(f"STOR {temporary}", stream, blocksize=BLOCK_SIZE, callback=count)
                self._rename(ftp, temporary, path, sent)
                # The file is in place: a server that drops the connection instead of answering QUIT changes nothing.
                with contextlib.suppress(*ftplib.all_errors):
                    ftp.quit()
            finally:
                ftp.close()
        except HostNotAllowed as error:
            raise DeliveryError(f"refused host: {error}", permanent=True) from error
        except ftplib.error_perm as error:
            raise _refusal(error) from error
        except ftplib.error_temp as error:
            raise DeliveryError(f"FTP server busy: {error}") from error
        except ssl.SSLCertVerificationError as error:
            raise DeliveryError(
                f"the FTPS server's certificate was not accepted for {self.config.host}: {error.verify_message}",
                permanent=True,
            ) from error
        except (OSError, EOFError, ftplib.Error) as error:
            reason = str(error) or type(error).__name__
            raise DeliveryError(f"FTP server unreachable or connection lost: {reason}") from error
        return DeliveryReceipt(remote_reference=f"{self.config.protocol}://{self.config.host}/{path}")

    @cached_property
    def _sftp(self) -> SftpTransfer:
        # One per backend: a host key it pins is verified by its later deliveries.
        return SftpTransfer(self.config, self.context)

    def _connect(self) -> ftplib.FTP:
        host, port = self.config.host, self.config.port
        address = ensure_host_allowed(host, port)
        timeout = self.context.deadline.timeout(CONNECT_TIMEOUT_SECONDS)
        if self.config.protocol == "ftps":
            ftp: ftplib.FTP = GuardedFTPTLS(context=_tls_context(), timeout=timeout)
        else:
            ftp = GuardedFTP(timeout=timeout)
        ftp.user_host = host  # type: ignore[attr-defined]
        # Dialled here rather than by `ftp.connect`, which reads the welcome message before the socket could be
        # registered: a server dripping "220-" continuation lines would hold the attempt past its deadline.
        sock = socket.create_connection((address, port), timeout=timeout)
        register_socket(check_connected_socket(sock, host=host))
        # What `ftplib.FTP.connect` sets up, on our socket. ftplib names the TLS server after `host`: the name the
        # user gave, not the address dialled.
        ftp.host, ftp.port, ftp.timeout = host, port, timeout
        ftp.sock, ftp.af = sock, sock.family
        ftp.file = sock.makefile("r", encoding=ftp.encoding)
        try:
            ftp.welcome = ftp.getresp()
        except BaseException:
            ftp.close()
            raise
        return ftp

    def _start_session(self, ftp: ftplib.FTP) -> None:
        """TLS (for ftps), login, protected data channel."""
        if isinstance(ftp, ftplib.FTP_TLS):
            try:
                ftp.auth()
            except ftplib.error_perm as error:
                raise DeliveryError(
                    f"the FTP server does not offer TLS (AUTH TLS refused: {error}); use protocol ftp or enable FTPS",
                    permanent=True,
                ) from error
        ftp.login(self.config.username, self.config.secret_value("password"))
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()  # the data channel is encrypted too
        ftp.set_pasv(True)

    @staticmethod
    def _make_folders(ftp: ftplib.FTP, folder: str) -> None:
        built = ""
        for segment in filter(None, folder.split("/")):
            built = f"{built}/{segment}" if built else segment
            try:
                ftp.mkd(built)
            except ftplib.error_perm as error:
                # "550 exists" has no standard wording across servers: a folder that really could not be made
                # fails the upload below with its own 550.
                if not str(error).startswith("550") and not str(error).startswith("553"):
                    raise

    @staticmethod
    def _rename(ftp: ftplib.FTP, temporary: str, path: str, sent: int) -> None:
        """Give the complete upload its final name (ftplib's `rename`, in its two steps to tell which is refused).

        Some servers (IIS, Windows-backed ones) refuse to rename over an existing file: only then — the target
        exists and the upload is whole on the server — is the existing file deleted first. A refused RNFR (no
        rename permission, the upload gone) never costs the copy already delivered under the final name."""
        try:
            answer = ftp.sendcmd(f"RNFR {temporary}")
            if not answer.startswith("3"):
                raise ftplib.error_reply(answer)  # noqa: S321 (an FTP reply class, not a connection)
        except ftplib.error_perm:
            _discard(ftp, temporary)
            raise
        try:
            ftp.voidcmd(f"RNTO {path}")
            return
        except ftplib.error_perm as error:
            refused = error
        if not _whole_upload_over_existing_file(ftp, temporary, path, sent):
            _discard(ftp, temporary)
            raise refused
        ftp.delete(path)
        # From here a failure keeps the temporary file: it is the only copy left on the server.
        ftp.rename(temporary, path)


def _whole_upload_over_existing_file(ftp: ftplib.FTP, temporary: str, path: str, sent: int) -> bool:
    try:
        return ftp.size(temporary) == sent and ftp.size(path) is not None
    except (ftplib.error_perm, ftplib.error_reply):  # no such file, or no SIZE command: nothing is deleted
        return False


def _discard(ftp: ftplib.FTP, temporary: str) -> None:
    # Best effort: a retry uploads again under the same temporary name, overwriting what is left.
    with contextlib.suppress(ftplib.error_perm, ftplib.error_temp, ftplib.error_reply):
        ftp.delete(temporary)


def _refusal(error: ftplib.error_perm) -> DeliveryError:
    message = str(error)
    if message.startswith(LOGIN_REFUSED):
        return DeliveryError(f"FTP login refused: {message}", needs_reconnect=True)
    # Other 5xx answers (permission denied on a folder, a full disk, a file name the server refuses) are settings
    # on the user's server, not ours: not permanent, so a server fixed within the retry schedule still delivers
    # (as with refused credentials or a missing S3 bucket).
    return DeliveryError(f"FTP server refused: {message}")
