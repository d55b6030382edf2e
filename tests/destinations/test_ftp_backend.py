"""The ftp destination (protocol ftp and ftps) against real local pyftpdlib servers."""

import contextlib
import ftplib
import hashlib
import socket
import threading
import time
import tracemalloc
from dataclasses import replace

import pytest
from pydantic import SecretStr

from apertur.deadlines import Deadline
from destinations.backends.base import AttemptContext, DeliveryError
from destinations.backends.ftp import FtpBackend, FtpConfig
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    UserHostContract,
    make_staged_image,
    rendered_path,
)
from tests.destinations.test_destinations_api import assert_no_secret, assert_validation_error, destinations_url
from tests.factories import noisy_jpeg
from tests.servers.ftp import PASSWORD, PASV_ELSEWHERE_ADDRESS, FtpServer, Misbehaviour, files_under
from tests.servers.s3 import free_port


def ftp_backend(server: FtpServer, username: str, **config) -> FtpBackend:
    return FtpBackend(FtpConfig.model_validate(server.config(username, **config)))


@pytest.fixture
def trusted_ftps(ftps_server, settings):
    """The FTPS server's self-signed certificate, trusted as a private CA would be."""
    settings.APERTUR_OUTBOUND_CA_BUNDLE = str(ftps_server.certificate)
    return ftps_server


class FtpTarget(ContractTarget):
    def __init__(self, server: FtpServer) -> None:
        self.server = server
        self.username, self.home = server.add_user()

    def backend(self) -> FtpBackend:
        return ftp_backend(self.server, self.username)

    def failing_backend(self) -> FtpBackend:
        # A user who may list but not write: the server answers 550 to the upload.
        username, _ = self.server.add_user(permissions="elr")
        return ftp_backend(self.server, username)

    def backend_with_refused_credentials(self) -> FtpBackend:
        return ftp_backend(self.server, self.username, password="not-the-password")

    def delivered(self) -> dict[str, bytes]:
        return files_under(self.home)

    def location(self, image, path: str) -> str:
        return path


class TestFtpBackend(BackendContract, UserHostContract):
    rewritable_secret = ("password",)

    @pytest.fixture
    def target(self, ftp_server) -> FtpTarget:
        return FtpTarget(ftp_server)


class TestFtpsBackend(BackendContract, UserHostContract):
    rewritable_secret = ("password",)

    @pytest.fixture
    def target(self, trusted_ftps) -> FtpTarget:
        return FtpTarget(trusted_ftps)


# --- paths and atomicity ------------------------------------------------------------------------------


def test_a_nested_remote_path_is_created_level_by_level(ftp_server):
    username, home = ftp_server.add_user()
    backend = ftp_backend(ftp_server, username, remotePath="/clients/acme/ 2026 /")
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = backend.remote_path(image)

    receipt = backend.deliver(image, path)

    assert path == f"clients/acme/2026/{rendered_path(image)}"
    assert files_under(home) == {path: image.open().read()}
    assert receipt.remote_reference == f"ftp://localhost/{path}"


def test_the_upload_completes_under_a_temporary_name_and_only_then_gets_its_final_name(ftp_server):
    username, home = ftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)
    folder, _, name = path.rpartition("/")

    ftp_backend(ftp_server, username).deliver(image, path)

    # The server saw the bytes arrive complete under the temporary name; the final name came by RNFR/RNTO.
    temporary = f"{folder}/.{name}.{image.delivery_id}.part"
    assert ftp_server.received[username] == [temporary]
    assert files_under(home) == {path: image.open().read()}


def test_an_upload_cut_by_the_server_leaves_no_file_under_the_final_name_and_a_retry_leaves_one_whole_file(
    ftp_server,
):
    username, home = ftp_server.add_user(Misbehaviour.CUT_UPLOAD)
    data = noisy_jpeg((1024, 768))
    image = make_staged_image(data)
    path = rendered_path(image)
    backend = ftp_backend(ftp_server, username)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert raised.value.permanent is False
    assert path not in files_under(home)
    ftp_server.misbehaving[username] = Misbehaviour.NONE
    backend.deliver(replace(image, attempt=2), path)
    assert files_under(home) == {path: data}


def test_a_pasv_reply_naming_a_private_address_is_not_followed(ftp_server, settings):
    # Only the server's own (loopback) address is allowed; its PASV reply names 10.0.0.1 (the FTP bounce trick, or
    # a server behind NAT). The data connection goes to the control connection's peer instead.
    settings.APERTUR_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    username, home = ftp_server.add_user(Misbehaviour.PASV_ELSEWHERE)
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)

    ftp_backend(ftp_server, username).deliver(image, path)

    assert ftp_server.pasv_replies[-1].startswith(
        f"227 Entering passive mode ({PASV_ELSEWHERE_ADDRESS.replace('.', ',')}"
    )
    assert files_under(home) == {path: image.open().read()}


# --- errors -------------------------------------------------------------------------------------------


def test_refused_login_flags_reconnect_and_is_retried(ftp_server):
    username, _ = ftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        ftp_backend(ftp_server, username, password="wrong").deliver(image, rendered_path(image))

    assert raised.value.message.startswith("FTP login refused: 530")
    assert (raised.value.needs_reconnect, raised.value.permanent) == (True, False)


def test_a_folder_the_user_may_not_write_is_a_clear_error_that_will_be_retried(ftp_server):
    username, home = ftp_server.add_user(permissions="elr")
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        ftp_backend(ftp_server, username).deliver(image, rendered_path(image))

    assert raised.value.message.startswith("FTP server refused: 550")
    assert (raised.value.needs_reconnect, raised.value.permanent) == (False, False)
    assert files_under(home) == {}


def test_an_unreachable_server_is_a_failure_that_will_be_retried(ftp_server):
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = FtpBackend(FtpConfig(host="127.0.0.1", port=free_port(), username="a", password="b"))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message.startswith("FTP server unreachable or connection lost:")
    assert raised.value.permanent is False


# --- ftps ---------------------------------------------------------------------------------------------


def test_ftps_protects_the_data_channel_on_a_server_that_requires_it(trusted_ftps):
    # The server refuses a cleartext data channel (tls_data_required): a delivery only succeeds after PROT P.
    username, home = trusted_ftps.add_user()
    data = noisy_jpeg()
    image = make_staged_image(data)
    path = rendered_path(image)

    receipt = ftp_backend(trusted_ftps, username).deliver(image, path)

    assert files_under(home) == {path: data}
    assert receipt.remote_reference == f"ftps://localhost/{path}"


def test_ftps_asked_of_a_server_without_tls_is_refused_and_nothing_is_sent_in_clear(ftp_server):
    username, home = ftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        ftp_backend(ftp_server, username, protocol="ftps").deliver(image, rendered_path(image))

    assert raised.value.message.startswith("the FTP server does not offer TLS (AUTH TLS refused: 5")
    assert raised.value.permanent is True
    assert files_under(home) == {}


def test_an_ftps_certificate_that_is_not_trusted_is_a_permanent_failure(ftps_server, settings):
    settings.APERTUR_OUTBOUND_CA_BUNDLE = ""
    username, home = ftps_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        ftp_backend(ftps_server, username).deliver(image, rendered_path(image))

    assert raised.value.message.startswith("the FTPS server's certificate was not accepted for localhost:")
    assert raised.value.permanent is True
    assert files_under(home) == {}


# --- size and time ------------------------------------------------------------------------------------


def test_a_20_mb_image_is_streamed_without_being_held_in_memory(ftp_server, tmp_path):
    size = 20 * 1024 * 1024
    source = tmp_path / "large.jpg"
    with source.open("wb") as file:
        for _ in range(20):
            file.write(b"\xa5" * (1024 * 1024))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    username, home = ftp_server.add_user()
    image = make_staged_image(b"", size_bytes=size, sha256=digest, opener=lambda: source.open("rb"))
    path = rendered_path(image)
    backend = ftp_backend(ftp_server, username)

    tracemalloc.start()
    try:
        backend.deliver(image, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte image"
    stored = home / path
    assert stored.stat().st_size == size
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest


def test_a_server_that_reads_an_upload_slowly_is_cut_at_the_attempt_deadline(ftp_server):
    # Each block is taken within a fraction of a second, so no per-operation timeout fires: only the attempt's
    # deadline, which shuts the registered data socket, ends the ~25 s upload.
    username, home = ftp_server.add_user(Misbehaviour.SLOW_UPLOAD)
    image = make_staged_image(bytes(16 * 1024 * 1024))
    path = rendered_path(image)
    backend = ftp_backend(ftp_server, username)

    started = time.monotonic()
    with Deadline(1.0) as deadline:
        backend.context = AttemptContext(deadline=deadline)
        with pytest.raises(DeliveryError) as raised:
            backend.deliver(image, path)
    elapsed = time.monotonic() - started

    assert ftp_server.slowed.is_set()
    assert deadline.expired
    assert elapsed < 5, (elapsed, raised.value.message)
    assert raised.value.permanent is False
    assert path not in files_under(home)


# --- config and API -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"protocol": "scp"}, "protocol", "Input should be 'ftp', 'ftps' or 'sftp'"),
        ({"host": "ftp://files.example.com"}, "host", "must be a host name or an IP address"),
        ({"host": "files.example.com/photos"}, "host", "must be a host name or an IP address"),
        ({"port": 0}, "port", "greater than or equal to 1"),
        ({"remotePath": "a\r\nDELE b"}, "remotePath", "must not contain line breaks"),
        ({"password": "p\r\nDELE b"}, "password", "must not contain line breaks"),
        ({"protocol": "ftps", "password": "p\nx"}, "password", "must not contain line breaks"),
        ({"passive": False}, "passive", "Extra inputs are not permitted"),
    ],
)
def test_config_is_validated_strictly(config, field, message):
    with pytest.raises(ValueError, match=message) as raised:
        FtpConfig.model_validate({"host": "files.example.com", "username": "u", "password": "p", **config})
    assert raised.value.errors()[0]["loc"] == (field,)


def test_the_api_creates_an_ftp_destination_with_its_password_masked_and_tests_it(api_client, owner, ftp_server):
    username, home = ftp_server.add_user()
    config = ftp_server.config(username, remotePath="incoming")

    created = api_client.post(
        destinations_url(owner), {"type": "ftp", "name": "Studio FTP", "config": config}, format="json", **owner.auth
    )
    assert created.status_code == 201, created.content
    destination = created.json()
    tested = api_client.post(destinations_url(owner, destination["id"], "test"), format="json", **owner.auth)

    assert destination["config"] == {**config, "password": "••••"}
    assert_no_secret(created, PASSWORD)
    assert tested.status_code == 200, tested.content
    assert tested.json()["success"] is True, tested.json()
    [test_file] = files_under(home)
    assert test_file.startswith("apertur-test/") and test_file.endswith(".png")


def test_the_api_refuses_a_bad_ftp_config_on_create_and_patch(api_client, owner, ftp_server):
    username, _ = ftp_server.add_user()
    created = api_client.post(
        destinations_url(owner),
        {"type": "ftp", "name": "SCP", "config": ftp_server.config(username, protocol="scp")},
        format="json",
        **owner.auth,
    )
    destination = api_client.post(
        destinations_url(owner),
        {"type": "ftp", "name": "FTP", "config": ftp_server.config(username)},
        format="json",
        **owner.auth,
    ).json()
    patched = api_client.patch(
        destinations_url(owner, destination["id"]),
        {"config": {"host": "ftp://files.example.com"}},
        format="json",
        **owner.auth,
    )
    kept = api_client.patch(
        destinations_url(owner, destination["id"]), {"config": {"remotePath": "new"}}, format="json", **owner.auth
    )

    assert_validation_error(created, {"config.protocol": ["Input should be 'ftp', 'ftps' or 'sftp'"]})
    assert_validation_error(
        patched,
        {"config.host": ["must be a host name or an IP address, without a scheme, port or path"]},
    )
    assert_no_secret(created, PASSWORD)
    assert kept.status_code == 200, kept.content
    assert kept.json()["config"]["password"] == "••••"
    assert kept.json()["config"]["remotePath"] == "new"


class DrippingGreeting:
    """A server that never finishes its welcome message: a "220-" continuation line every half second."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self.stopped.is_set():
                connection, _ = self.listener.accept()
                threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            while not self.stopped.is_set():
                connection.sendall(b"220-hello\r\n")
                time.sleep(0.5)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.mark.parametrize("protocol", ["ftp", "ftps"])
def test_a_welcome_message_that_never_ends_is_cut_at_the_attempt_deadline(protocol):
    server = DrippingGreeting()
    config = {"host": "127.0.0.1", "port": server.port, "username": "u", "password": "p", "protocol": protocol}
    backend = FtpBackend(FtpConfig.model_validate(config))
    image = make_staged_image(b"x")
    try:
        started = time.monotonic()
        with Deadline(2.0) as deadline:
            backend.context = AttemptContext(deadline=deadline)
            with pytest.raises(DeliveryError) as raised:
                backend.deliver(image, rendered_path(image))
        elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert deadline.expired
    assert elapsed < 3, elapsed
    assert raised.value.permanent is False, raised.value.message


def test_a_refused_rename_keeps_the_copy_already_delivered_and_is_retried(ftp_server):
    # A user who may upload and delete but not rename: RNFR is refused, so nothing may be deleted to make room.
    username, home = ftp_server.add_user(permissions="elrdwm")
    backend = ftp_backend(ftp_server, username)
    image = make_staged_image(b"the new copy")
    path = rendered_path(image)
    final = home / path
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(b"previously delivered copy")

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert raised.value.permanent is False
    assert files_under(home) == {path: b"previously delivered copy"}  # the .part is cleaned up too


def test_a_server_that_will_not_rename_over_a_file_gets_it_deleted_first(ftp_server, monkeypatch):
    username, home = ftp_server.add_user()
    backend = ftp_backend(ftp_server, username)
    image = make_staged_image(b"the new copy")
    path = rendered_path(image)
    final = home / path
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(b"previously delivered copy")
    real_voidcmd = ftplib.FTP.voidcmd
    refused = []

    def windows_like(self, command):
        if command.startswith("RNTO") and not refused and final.exists():
            refused.append(command)
            raise ftplib.error_perm("550 File exists")
        return real_voidcmd(self, command)

    monkeypatch.setattr(ftplib.FTP, "voidcmd", windows_like)
    backend.deliver(image, path)

    assert refused
    assert files_under(home) == {path: b"the new copy"}


def test_the_api_refuses_an_ftp_password_with_a_line_break_without_repeating_it(api_client, owner, ftp_server):
    username, _ = ftp_server.add_user()
    response = api_client.post(
        destinations_url(owner),
        {"type": "ftp", "name": "FTP", "config": ftp_server.config(username, password="ftppass\r\nDELE x")},
        format="json",
        **owner.auth,
    )

    assert_validation_error(
        response, {"config.password": ["must not contain line breaks or control characters (for ftp and ftps)"]}
    )
    assert_no_secret(response, "ftppass")


def test_a_value_the_library_refuses_fails_the_attempt_for_good_without_quoting_secrets(ftp_server):
    # A config stored before passwords were checked: ftplib refuses the line break with a ValueError.
    username, home = ftp_server.add_user()
    config = FtpConfig.model_validate(ftp_server.config(username))
    config.password = SecretStr("ftppass\nDELE x")
    backend = FtpBackend(config)
    image = make_staged_image(b"x")

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.permanent is True
    assert raised.value.message.startswith("the ftp destination's settings or path cannot be used: ")
    assert "ftppass" not in raised.value.message
    assert files_under(home) == {}
