"""SFTP, the ftp type's protocol "sftp", on paramiko (docs/destinations.md "Types").

The socket is dialled here, to the address the outbound gate (apertur/http.py) checked, and put under the attempt's
deadline before paramiko sees it; paramiko's own waits (banner, key exchange, authentication, channel replies) get
timeouts capped by the same deadline. The server's host key is verified before any credential is sent: against
`hostKeyFingerprint` when the destination has one, else it is pinned once the login succeeds (trust on first use,
written back with the destination's secrets). A file is written under a temporary name in its final folder and
renamed once complete, so a transfer cut half-way never leaves a partial file under the final name.

For the delivery engine (`context.keep_connections`), a worker thread keeps a connection its attempt used
successfully, logged in with its SFTP channel open, for its next attempt to the same destination
(kept_connections.py; docs/destinations.md, the sftp row's "Kept connections").
"""

import base64
import binascii
import contextlib
import errno
import hmac
import io
import json
import secrets
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings
from pyasn1.codec.der import decoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5208, rfc7914, rfc8018

from apertur.deadlines import register_socket
from apertur.http import HostNotAllowed, check_connected_socket, ensure_host_allowed
from destinations.backends.base import AttemptContext, DeliveryError, DeliveryReceipt, StagedImage
from destinations.backends.kept_connections import KeptConnections

if TYPE_CHECKING:
    from destinations.backends.ftp import FtpConfig

BLOCK_SIZE = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 30
HANDSHAKE_TIMEOUT_SECONDS = 30  # each of: the server's banner, the key exchange, the login
OPERATION_TIMEOUT_SECONDS = 60  # each SFTP request's answer
PINNED_FINGERPRINT = "hostKeyFingerprint"
MAX_KEPT_CONNECTIONS = 4  # per delivery worker thread
# A kept connection is logged in once: one busy enough never to idle out is still replaced after this long, so a
# password or key revoked on the server, or a rotated host key, is met within minutes.
MAX_KEPT_CONNECTION_AGE_SECONDS = 300
LIVENESS_TIMEOUT_SECONDS = 2
_KEY_CLASSES = (
    (rsa.RSAPrivateKey, paramiko.RSAKey),
    (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
    (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
)


class PrivateKeyError(ValueError):
    """A `privateKey` that cannot be used; the message never quotes the key."""


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """The paramiko key for `privateKey` text in OpenSSH or PEM form (PKCS#1, SEC1, PKCS#8), decrypted with
    `passphrase` when it is protected by one.

    cryptography reads every form and says clearly what is wrong (paramiko's Ed25519 class reads the OpenSSH form
    only); the key is then handed to paramiko in the OpenSSH form, in memory."""
    data = text.strip().encode()
    password = passphrase.encode() if passphrase else None
    openssh_form = data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    if openssh_form:
        _refuse_costly_kdf(data)
    elif data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"):
        _refuse_costly_pkcs8_derivation(data)
    try:
        if openssh_form:
            loaded = serialization.load_ssh_private_key(data, password)
        else:
            loaded = serialization.load_pem_private_key(data, password)
    except TypeError as error:  # cryptography's way of saying a passphrase is missing, or not wanted
        if password is None:
            raise PrivateKeyError("the key is protected by a passphrase: give its passphrase") from None
        raise PrivateKeyError("the key is not protected by a passphrase: leave passphrase out") from error
    except ValueError:
        if password is not None:
            # A wrong passphrase decrypts to garbage: cryptography then reports a bad checksum (OpenSSH form) or a
            # failed decryption (PEM), never "wrong password" as such.
            raise PrivateKeyError("wrong passphrase (or a damaged key)") from None
        raise PrivateKeyError("not a private key in OpenSSH or PEM form") from None
    except UnsupportedAlgorithm:
        raise PrivateKeyError("unsupported key type: use an RSA, ECDSA or Ed25519 key") from None
    key_class = next((paramiko_class for kind, paramiko_class in _KEY_CLASSES if isinstance(loaded, kind)), None)
    if key_class is None:
        raise PrivateKeyError("unsupported key type: use an RSA, ECDSA or Ed25519 key")
    if isinstance(loaded, ec.EllipticCurvePrivateKey) and loaded.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise PrivateKeyError("unsupported ECDSA curve: use nistp256, nistp384 or nistp521")
    openssh = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return key_class.from_private_key(io.StringIO(openssh.decode()))


MAX_BCRYPT_ROUNDS = 128  # ssh-keygen's default is 16; each round costs a web worker tens of milliseconds
_OPENSSH_MAGIC = b"openssh-key-v1\0"


MAX_PBKDF2_ITERATIONS = 1_000_000  # OpenSSL writes 2,048; a million costs a worker about half a second
MAX_SCRYPT_COST = 2**17  # scrypt's N (its memory is 128 * N * r bytes)
MAX_SCRYPT_BLOCK_SIZE = 8
MAX_SCRYPT_PARALLELISM = 1


def _refuse_costly_pkcs8_derivation(data: bytes) -> None:
    """Refuse an encrypted PKCS#8 key whose passphrase derivation costs more than the caps above, before anything
    derives it: like OpenSSH's bcrypt rounds, the PBKDF2 count (up to 2^31) or scrypt's N, r and p are the key's
    to choose, and cryptography derives them holding the GIL, so one such key freezes a whole process for minutes,
    on every save and every delivery. Only PBES2 with PBKDF2 or scrypt is read; another scheme is refused."""

    def refused(detail: str) -> PrivateKeyError:
        return PrivateKeyError(f"{detail}: re-encrypt it with `ssh-keygen -p -f <key file>` (the OpenSSH form)")

    try:
        der = base64.b64decode(b"".join(data.splitlines()[1:-1]), validate=False)
        info, _ = decoder.decode(der, asn1Spec=rfc5208.EncryptedPrivateKeyInfo())
        algorithm = info["encryptionAlgorithm"]
        scheme = algorithm["algorithm"]
        pbes2 = (
            decoder.decode(algorithm["parameters"], asn1Spec=rfc8018.PBES2_params())[0]
            if scheme == rfc8018.id_PBES2
            else None
        )
        derivation = pbes2["keyDerivationFunc"] if pbes2 is not None else None
        kind = derivation["algorithm"] if derivation is not None else None
        if kind == rfc8018.id_PBKDF2:
            costs = decoder.decode(derivation["parameters"], asn1Spec=rfc8018.PBKDF2_params())[0]
        elif kind == rfc7914.id_scrypt:
            costs = decoder.decode(derivation["parameters"], asn1Spec=rfc7914.Scrypt_params())[0]
    except (PyAsn1Error, binascii.Error, ValueError, TypeError):
        raise PrivateKeyError("not a private key in OpenSSH or PEM form") from None
    if pbes2 is None:
        raise refused("the key's encryption scheme is not PBES2")
    if kind == rfc8018.id_PBKDF2:
        iterations = int(costs["iterationCount"])
        if iterations > MAX_PBKDF2_ITERATIONS:
            raise refused(f"the key's PBKDF2 iterations are too many ({iterations}, at most {MAX_PBKDF2_ITERATIONS})")
    elif kind == rfc7914.id_scrypt:
        cost, block, parallel = (
            int(costs[name]) for name in ("costParameter", "blockSize", "parallelizationParameter")
        )
        if cost > MAX_SCRYPT_COST or block > MAX_SCRYPT_BLOCK_SIZE or parallel > MAX_SCRYPT_PARALLELISM:
            raise refused(f"the key's scrypt parameters are too costly (N={cost}, r={block}, p={parallel})")
    else:
        raise refused("the key's passphrase derivation is neither PBKDF2 nor scrypt")


def _refuse_costly_kdf(data: bytes) -> None:
    """Refuse an OpenSSH key whose passphrase derivation asks for more bcrypt rounds than MAX_BCRYPT_ROUNDS, before
    anything derives it: the count is the key's to choose, and a key asking for millions would hold a worker for
    hours when the destination is saved. Malformed keys are left to cryptography, which says what is wrong."""
    body = b"".join(data.splitlines()[1:-1])
    try:
        blob = base64.b64decode(body, validate=False)
    except (binascii.Error, ValueError):
        return
    if not blob.startswith(_OPENSSH_MAGIC):
        return
    view = memoryview(blob)[len(_OPENSSH_MAGIC) :]
    fields: list[bytes] = []
    for _ in range(3):  # cipher name, KDF name, KDF options
        if len(view) < 4:
            return
        length = struct.unpack(">I", view[:4])[0]
        fields.append(bytes(view[4 : 4 + length]))
        view = view[4 + length :]
    kdf_name, options = fields[1], fields[2]
    if kdf_name != b"bcrypt" or len(options) < 4:
        return
    salt_length = struct.unpack(">I", options[:4])[0]
    rounds_at = 4 + salt_length
    if len(options) < rounds_at + 4:
        return
    rounds = struct.unpack(">I", options[rounds_at : rounds_at + 4])[0]
    if rounds > MAX_BCRYPT_ROUNDS:
        raise PrivateKeyError(
            f"the key's KDF rounds are too many ({rounds}, at most {MAX_BCRYPT_ROUNDS}): "
            "re-encrypt it with `ssh-keygen -p -a 100 -f <key file>`"
        )


@dataclass
class SftpConnection:
    """A logged-in transport with its SFTP channel open."""

    transport: paramiko.Transport
    sftp: paramiko.SFTPClient
    dialled_at: float = field(default_factory=time.monotonic)

    def age(self) -> float:
        return time.monotonic() - self.dialled_at

    def close(self) -> None:
        self.transport.close()  # its channels with it


_kept: KeptConnections[SftpConnection] = KeptConnections(
    MAX_KEPT_CONNECTIONS, idle_limit=lambda: settings.APERTUR_SFTP_KEEPALIVE_SECONDS
)
# A kept connection's key holds a digest of the credentials, never them; keyed with this process's own secret, the
# digest of a weak password says nothing outside the process.
_CREDENTIALS_DIGEST_KEY = secrets.token_bytes(32)


class SftpTransfer:
    """Deliveries over SFTP for one ftp destination with protocol "sftp": on a connection of their own, or for the
    delivery engine on one its worker thread kept from an earlier attempt to the same destination."""

    def __init__(self, config: "FtpConfig", context: AttemptContext) -> None:
        self.config = config
        self.context = context
        # The fingerprint to verify: the configured one, or the one this transfer pinned.
        self.expected_fingerprint = config.hostKeyFingerprint

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        folder, _, name = path.rpartition("/")
        temporary = f"{folder}/.{name}.{image.delivery_id}.part".lstrip("/")
        # Opened first: staged bytes that are gone are the delivery engine's error to report, not the server's.
        with image.open() as stream:
            try:
                connection = self._kept_connection() or self._dial()
                delivered = False
                try:
                    sftp, transport = connection.sftp, connection.transport
                    with self._server_answers(transport, "make folders"):
                        self._make_folders(sftp, folder)
                    with self._server_answers(transport, "take the upload"):
                        self._upload(sftp, transport, stream, temporary)
                    with self._server_answers(transport, "rename the uploaded file"):
                        self._rename(sftp, transport, temporary, path)
                    delivered = True
                finally:
                    # Kept only after a successful attempt, and not past its age limit; closed otherwise (after a
                    # failure, what the server and paramiko make of it is unknown), whatever interrupted us.
                    if delivered and self._keeps_connections() and connection.age() < MAX_KEPT_CONNECTION_AGE_SECONDS:
                        _kept.put_back(self._connection_key(), connection)
                    else:
                        connection.close()
            except (OSError, EOFError, paramiko.SSHException) as error:
                reason = str(error) or type(error).__name__
                raise DeliveryError(f"SFTP server unreachable or connection lost: {reason}") from error
        return DeliveryReceipt(remote_reference=f"sftp://{self.config.host}/{path}")

    def _keeps_connections(self) -> bool:
        return self.context.keep_connections and settings.APERTUR_SFTP_KEEPALIVE_SECONDS > 0

    def _connection_key(self) -> tuple[str | int | None, ...]:
        """Everything that shapes a connection: a changed setting never reuses one made before it."""
        config = self.config
        secret_fields = (config.password, config.privateKey, config.passphrase)
        credentials = json.dumps([field and field.get_secret_value() for field in secret_fields])
        digest = hmac.digest(_CREDENTIALS_DIGEST_KEY, credentials.encode(), "sha256").hex()
        fingerprint = self.expected_fingerprint
        return (self.context.destination_id, config.host, config.port, config.username, digest, fingerprint)

    def _kept_connection(self) -> SftpConnection | None:
        """The connection this thread kept for this destination, if it still answers within this attempt's
        deadline; else None (and it is closed). It was verified (gate, host key, login) when it was dialled."""
        if not self._keeps_connections():
            return None
        connection = _kept.take(self._connection_key(), idle_limit=settings.APERTUR_SFTP_KEEPALIVE_SECONDS)
        if connection is None:
            return None
        try:
            # Under this attempt's deadline, as a fresh connection is: its timer shuts the socket.
            register_socket(connection.transport.sock)
            channel = connection.sftp.get_channel()
            if not connection.transport.is_active():
                raise EOFError("closed by the server")
            # One round trip: the server still answers on this connection. Briefly: a connection a firewall dropped
            # without a word would otherwise take the attempt's whole deadline before a fresh one is dialled.
            channel.settimeout(self.context.deadline.timeout(LIVENESS_TIMEOUT_SECONDS))
            connection.sftp.normalize(".")
            channel.settimeout(self.context.deadline.timeout(OPERATION_TIMEOUT_SECONDS))
        except BaseException as error:
            connection.close()
            if isinstance(error, (OSError, EOFError, paramiko.SSHException)):
                return None
            raise
        return connection

    def _dial(self) -> SftpConnection:
        """A new connection: dialled through the gate, host key verified (or pinned), logged in, channel open."""
        transport = self._connect()
        try:
            host_key = self._verified_host_key(transport)
            self._log_in(transport)
            if self.expected_fingerprint is None:
                self._pin(host_key)
            return SftpConnection(transport, self._open_sftp(transport))
        except BaseException:
            transport.close()
            raise

    def _connect(self) -> paramiko.Transport:
        """A transport on a socket dialled to the address the gate checked, under the attempt's deadline."""
        host, port, deadline = self.config.host, self.config.port, self.context.deadline
        try:
            address = ensure_host_allowed(host, port)
            sock = socket.create_connection((address, port), timeout=deadline.timeout(CONNECT_TIMEOUT_SECONDS))
            register_socket(check_connected_socket(sock, host=host))
        except HostNotAllowed as error:
            raise DeliveryError(f"refused host: {error}", permanent=True) from error
        except OSError as error:
            reason = str(error) or type(error).__name__
            raise DeliveryError(f"SFTP server unreachable: {reason}") from error
        transport = paramiko.Transport(sock)
        timeout = deadline.timeout(HANDSHAKE_TIMEOUT_SECONDS)
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
        return transport

    def _verified_host_key(self, transport: paramiko.Transport) -> paramiko.PKey:
        """Key exchange; the host key the server proved it holds, refused unless it is the expected one."""
        transport.start_client(timeout=self.context.deadline.timeout(HANDSHAKE_TIMEOUT_SECONDS))
        key = transport.get_remote_server_key()
        if self.expected_fingerprint is not None and key.fingerprint != self.expected_fingerprint:
            raise _host_key_changed(self.expected_fingerprint, key)
        return key

    def _log_in(self, transport: paramiko.Transport) -> None:
        """With a private key, by the key alone; else by password. A refused key does not fall back to the password:
        a destination set up for a key does not send its server a password it was not meant to use (and paramiko
        would open a second "ssh-userauth" service request, which some servers answer by disconnecting)."""
        username, key = self.config.username, self.config.signing_key
        try:
            if key is not None:
                transport.auth_publickey(username, key)
            else:
                # With `fallback`, a server that offers only keyboard-interactive gets the password there.
                transport.auth_password(username, self.config.secret_value("password"), fallback=True)
        except paramiko.BadAuthenticationType as error:
            method = "keys" if key is not None else "passwords"
            raise DeliveryError(
                f"SFTP login refused: the server does not take {method}; it allows {', '.join(error.allowed_types)}",
                needs_reconnect=True,
            ) from error
        except paramiko.AuthenticationException as error:
            what = "the private key" if key is not None else "the user name or password"
            raise DeliveryError(
                f"SFTP login refused: the server did not accept {what}", needs_reconnect=True
            ) from error
        if not transport.is_authenticated():  # partial success: a server that wants a second factor
            raise DeliveryError(
                "SFTP login refused: the server wants more than one way of logging in", needs_reconnect=True
            )

    def _pin(self, presented: paramiko.PKey) -> None:
        """Write the host key's fingerprint back to the destination, unless another attempt pinned one meanwhile (then
        this server must present that one)."""
        with self.context.secrets.locked() as stored:
            pinned = stored.get(PINNED_FINGERPRINT)
            if pinned is not None and pinned != presented.fingerprint:
                raise _host_key_changed(pinned, presented)
            stored[PINNED_FINGERPRINT] = presented.fingerprint
        self.expected_fingerprint = presented.fingerprint

    def _open_sftp(self, transport: paramiko.Transport) -> paramiko.SFTPClient:
        # Opened by hand rather than SFTPClient.from_transport, whose channel open would wait up to an hour.
        timeout = self.context.deadline.timeout(OPERATION_TIMEOUT_SECONDS)
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.invoke_subsystem("sftp")
        return paramiko.SFTPClient(channel)

    @staticmethod
    def _make_folders(sftp: paramiko.SFTPClient, folder: str) -> None:
        built = ""
        for segment in filter(None, folder.split("/")):
            built = f"{built}/{segment}" if built else segment
            try:
                sftp.stat(built)
            except FileNotFoundError:
                try:
                    sftp.mkdir(built)
                except OSError:
                    # Made by a concurrent delivery in between: fine if it is there now, else the mkdir's error.
                    with contextlib.suppress(OSError):
                        sftp.stat(built)
                        continue
                    raise

    @staticmethod
    def _upload(sftp: paramiko.SFTPClient, transport: paramiko.Transport, stream: IO[bytes], temporary: str) -> None:
        """Stream the staged bytes to `temporary` with pipelined writes (32 KiB requests, not each awaited), then
        compare the size the server stored: paramiko drops the error answers to pipelined writes it has not read yet,
        so a server that stopped taking bytes (a full disk, a quota) shows up as a short file."""
        try:
            written = 0
            with sftp.open(temporary, "wb") as remote:
                remote.set_pipelined(True)
                while block := stream.read(BLOCK_SIZE):
                    remote.write(block)
                    written += len(block)
            stored = sftp.stat(temporary).st_size
            if stored != written:
                raise DeliveryError(
                    f"SFTP server refused to take the upload: it stored {stored} of {written} bytes (a full disk or a "
                    "quota?)"
                )
        except BaseException:
            if transport.is_active():  # a refusal, not a lost connection: leave no partial file behind
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    sftp.remove(temporary)
            raise

    @staticmethod
    def _rename(sftp: paramiko.SFTPClient, transport: paramiko.Transport, temporary: str, path: str) -> None:
        try:
            # OpenSSH's extension replaces the file in one step.
            sftp.posix_rename(temporary, path)
            return
        except OSError as error:
            # Only a server without the extension (it says "unsupported", in its own words) gets the fallback; after
            # a lost connection or an unanswered request the rename may have happened, and must not be undone.
            if not _answered_by_server(transport, error) or error.errno is not None:
                raise
        # SFTP v3 rename refuses to replace a file: delete the old one first (a moment without a file at `path`,
        # never a partial one).
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(path)
        sftp.rename(temporary, path)

    @contextlib.contextmanager
    def _server_answers(self, transport: paramiko.Transport, action: str) -> Iterator[None]:
        """An SFTP status the server answered with becomes a DeliveryError naming what was refused.

        Not permanent: permission denied, a full disk or a refused name are settings on the user's server, which
        the user can fix within the retry schedule (as the ftp protocols treat 5xx answers)."""
        try:
            yield
        except OSError as error:
            if not _answered_by_server(transport, error):
                raise
            reason = error.strerror or str(error)
            raise DeliveryError(f"SFTP server refused to {action}: {reason}") from error


def _answered_by_server(transport: paramiko.Transport, error: OSError) -> bool:
    """Whether `error` is an SFTP status the server sent. paramiko raises those as OSErrors, as it raises a lost
    connection: an answer is an OSError with no errno (or ENOENT/EACCES, which it maps), on a connection still up."""
    if isinstance(error, TimeoutError) or not transport.is_active():
        return False
    return error.errno in (None, errno.ENOENT, errno.EACCES)


def _host_key_changed(expected: str, presented: paramiko.PKey) -> DeliveryError:
    return DeliveryError(
        f"the SFTP server's host key does not match: expected {expected}, the server presented "
        f"{presented.fingerprint} ({presented.get_name()}). If the server's key really changed, set "
        "hostKeyFingerprint to the new fingerprint.",
        permanent=True,
    )
