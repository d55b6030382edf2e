"""The ftp destination with protocol sftp, against a real local SFTP server (asyncssh, tests/servers/sftp.py)."""

import base64
import contextlib
import hashlib
import io
import socket
import struct
import threading
import time
import tracemalloc
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from apertur.deadlines import Deadline
from destinations.attempts import backend_for
from destinations.backends import kept_connections, sftp
from destinations.backends.base import AttemptContext, DeliveryError, MemorySecretsStore
from destinations.backends.ftp import FtpBackend, FtpConfig
from destinations.backends.sftp import load_private_key
from destinations.models import Destination
from tests.destinations.contract import (
    BackendContract,
    ContractTarget,
    UserHostContract,
    make_staged_image,
    rendered_path,
    stored_destination,
)
from tests.destinations.test_destinations_api import assert_no_secret, assert_validation_error, destinations_url
from tests.factories import noisy_jpeg, wait_until
from tests.servers.s3 import free_port
from tests.servers.sftp import PASSPHRASE, PASSWORD, Misbehaviour, SftpServer, files_under

# A fingerprint no test server presents (SHA-256 of nothing).
OTHER_FINGERPRINT = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


def sftp_backend(server: SftpServer, username: str, **config) -> FtpBackend:
    return FtpBackend(FtpConfig.model_validate(server.config(username, **config)))


def key_only_backend(server: SftpServer, username: str, key) -> FtpBackend:
    """Logging in with `key` alone, no password."""
    config = {**server.config(username), "privateKey": key.private_text}
    del config["password"]
    if key.passphrase:
        config["passphrase"] = key.passphrase
    return FtpBackend(FtpConfig.model_validate(config))


class SftpTarget(ContractTarget):
    def __init__(self, server: SftpServer, key=None) -> None:
        self.server = server
        self.key = key
        self.username, self.home = server.add_user(keys=[key] if key else ())

    def backend(self) -> FtpBackend:
        if self.key is not None:
            return key_only_backend(self.server, self.username, self.key)
        return sftp_backend(self.server, self.username)

    def failing_backend(self) -> FtpBackend:
        # The server takes half of the first block, then fails the write ("No space left on device").
        username, _ = self.server.add_user(Misbehaviour.FAIL_UPLOAD)
        return sftp_backend(self.server, username)

    def backend_with_refused_credentials(self) -> FtpBackend:
        return sftp_backend(self.server, self.username, password="not-the-password")

    def delivered(self) -> dict[str, bytes]:
        return files_under(self.home)

    def location(self, image, path: str) -> str:
        return path


class TestSftpBackendWithPassword(BackendContract, UserHostContract):
    rewritable_secret = ("password",)

    @pytest.fixture
    def target(self, sftp_server) -> SftpTarget:
        return SftpTarget(sftp_server)


class TestSftpBackendWithKey(BackendContract):
    rewritable_secret = ("passphrase",)  # (a key's base64 holds "+", the case's separator)

    @pytest.fixture
    def target(self, sftp_server, client_keys) -> SftpTarget:
        return SftpTarget(sftp_server, client_keys["ed25519_protected"])


# --- logging in ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa_pem", "ed25519_protected", "rsa_pem_protected"])
def test_logs_in_with_a_private_key_of_each_kind(sftp_server, client_keys, kind):
    key = client_keys[kind]
    username, home = sftp_server.add_user(password=None, keys=[key])
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)

    key_only_backend(sftp_server, username, key).deliver(image, path)

    assert files_under(home) == {path: image.open().read()}


def test_a_key_the_server_does_not_accept_is_refused_and_flags_reconnect(sftp_server, client_keys):
    username, home = sftp_server.add_user(password=None, keys=[client_keys["ed25519"]])
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        key_only_backend(sftp_server, username, client_keys["rsa_pem"]).deliver(image, rendered_path(image))

    assert raised.value.message == "SFTP login refused: the server did not accept the private key"
    assert (raised.value.needs_reconnect, raised.value.permanent) == (True, False)
    assert files_under(home) == {}


def test_with_a_key_and_a_password_the_key_alone_is_used(sftp_server, client_keys):
    username, home = sftp_server.add_user(keys=[client_keys["ed25519"]])
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)

    sftp_backend(sftp_server, username, privateKey=client_keys["ed25519"].private_text).deliver(image, path)
    with pytest.raises(DeliveryError) as raised:
        sftp_backend(sftp_server, username, privateKey=client_keys["ecdsa"].private_text).deliver(image, path)

    assert files_under(home) == {path: image.open().read()}
    assert raised.value.message == "SFTP login refused: the server did not accept the private key"


def test_a_wrong_password_flags_reconnect_and_is_retried(sftp_server):
    username, _ = sftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        sftp_backend(sftp_server, username, password="wrong").deliver(image, rendered_path(image))

    assert raised.value.message == "SFTP login refused: the server did not accept the user name or password"
    assert (raised.value.needs_reconnect, raised.value.permanent) == (True, False)


# --- the host key -------------------------------------------------------------------------------------


def test_the_host_key_is_pinned_on_the_first_connection_and_a_changed_one_is_refused(own_sftp_server, owner):
    server = own_sftp_server
    username, home = server.add_user()
    destination = stored_destination(sftp_backend(server, username), owner.project)
    first = make_staged_image(noisy_jpeg((160, 120)))
    first_fingerprint = server.host_key_fingerprint

    backend_for(destination).deliver(first, rendered_path(first))
    pinned = Destination.objects.get(pk=destination.pk).secrets["hostKeyFingerprint"]
    server.change_host_key()
    second = make_staged_image(noisy_jpeg((160, 120)), image_id="img_01JSECOND00000000000000001")
    logins_before = len(server.logins)
    with pytest.raises(DeliveryError) as raised:
        backend_for(Destination.objects.get(pk=destination.pk)).deliver(second, rendered_path(second))

    assert pinned == first_fingerprint
    assert raised.value.permanent is True
    assert raised.value.message.startswith(
        f"the SFTP server's host key does not match: expected {first_fingerprint}, "
        f"the server presented {server.host_key_fingerprint} (ssh-ed25519)."
    )
    assert len(server.logins) == logins_before  # no credential went to the impostor
    assert files_under(home) == {rendered_path(first): first.open().read()}


def test_a_backend_that_pinned_a_key_verifies_it_on_its_next_delivery(own_sftp_server):
    server = own_sftp_server
    username, _ = server.add_user()
    backend = sftp_backend(server, username)
    image = make_staged_image(noisy_jpeg((160, 120)))

    backend.deliver(image, rendered_path(image))
    server.change_host_key()
    with pytest.raises(DeliveryError) as raised:
        backend.deliver(replace(image, attempt=2), rendered_path(image))

    assert raised.value.permanent is True
    assert server.host_key_fingerprint in raised.value.message


def test_a_fingerprint_set_up_front_refuses_another_key_before_any_credential_is_sent(sftp_server):
    username, home = sftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = sftp_backend(sftp_server, username, hostKeyFingerprint=OTHER_FINGERPRINT)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.permanent is True
    assert f"expected {OTHER_FINGERPRINT}, the server presented {sftp_server.host_key_fingerprint}" in (
        raised.value.message
    )
    assert username not in sftp_server.logins
    assert files_under(home) == {}


def test_a_fingerprint_set_up_front_that_matches_delivers_and_nothing_is_written_back(sftp_server):
    username, home = sftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)
    backend = sftp_backend(sftp_server, username, hostKeyFingerprint=sftp_server.host_key_fingerprint + "=")

    backend.deliver(image, path)

    assert files_under(home) == {path: image.open().read()}
    assert "hostKeyFingerprint" not in backend.context.secrets.secrets


def test_a_key_pinned_meanwhile_by_another_attempt_is_the_one_verified(sftp_server):
    # Two first attempts race: the other one pinned a key while this one (which started without) was connecting.
    username, home = sftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))
    config = FtpConfig.model_validate(sftp_server.config(username))
    secrets = MemorySecretsStore({"password": PASSWORD, "hostKeyFingerprint": OTHER_FINGERPRINT})
    backend = FtpBackend(config, AttemptContext(secrets=secrets))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.permanent is True
    assert f"expected {OTHER_FINGERPRINT}" in raised.value.message
    assert secrets.secrets["hostKeyFingerprint"] == OTHER_FINGERPRINT
    assert files_under(home) == {}


# --- paths and atomicity ------------------------------------------------------------------------------


def test_a_nested_remote_path_is_created_level_by_level(sftp_server):
    username, home = sftp_server.add_user()
    (home / "clients").mkdir()  # an existing level is kept
    backend = sftp_backend(sftp_server, username, remotePath="/clients/acme/ 2026 /")
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = backend.remote_path(image)

    receipt = backend.deliver(image, path)

    assert path == f"clients/acme/2026/{rendered_path(image)}"
    assert files_under(home) == {path: image.open().read()}
    assert receipt.remote_reference == f"sftp://127.0.0.1/{path}"


def test_the_upload_completes_under_a_temporary_name_and_is_then_renamed_in_one_step(sftp_server):
    username, home = sftp_server.add_user()
    image = make_staged_image(noisy_jpeg((160, 120)))
    path = rendered_path(image)
    folder, _, name = path.rpartition("/")
    temporary = f"{folder}/.{name}.{image.delivery_id}.part"

    sftp_backend(sftp_server, username).deliver(image, path)

    assert sftp_server.received[username] == [temporary]
    assert sftp_server.renames[username] == [("posix-rename", temporary, path)]
    assert files_under(home) == {path: image.open().read()}


def test_a_server_without_posix_rename_gets_the_old_file_deleted_then_a_plain_rename(sftp_server):
    username, home = sftp_server.add_user(Misbehaviour.NO_POSIX_RENAME)
    first_bytes, retried_bytes = noisy_jpeg((160, 120)), noisy_jpeg((160, 120))
    image = make_staged_image(first_bytes)
    path = rendered_path(image)
    backend = sftp_backend(sftp_server, username)

    backend.deliver(image, path)
    backend.deliver(replace(image, attempt=2, opener=lambda: io.BytesIO(retried_bytes)), path)

    assert [how for how, _, _ in sftp_server.renames[username]] == ["rename", "rename"]
    assert files_under(home) == {path: retried_bytes}


def test_a_connection_cut_mid_upload_leaves_no_file_under_the_final_name_and_a_retry_leaves_one_whole_file(
    sftp_server,
):
    username, home = sftp_server.add_user(Misbehaviour.CUT_UPLOAD)
    data = noisy_jpeg((1024, 768))
    image = make_staged_image(data)
    path = rendered_path(image)
    backend = sftp_backend(sftp_server, username)

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, path)

    assert raised.value.message.startswith("SFTP server unreachable or connection lost:")
    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    left = files_under(home)
    assert path not in left
    [partial] = left.values()  # the temporary file, half-written: the retry writes over it
    assert 0 < len(partial) < len(data)
    sftp_server.users[username].misbehaviour = Misbehaviour.NONE
    backend.deliver(replace(image, attempt=2), path)
    assert files_under(home) == {path: data}


def test_an_upload_the_server_fails_half_way_is_retried_and_leaves_no_partial_file(sftp_server):
    username, home = sftp_server.add_user(Misbehaviour.FAIL_UPLOAD)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        sftp_backend(sftp_server, username).deliver(image, rendered_path(image))

    # The server's own words ("No space left on device") answered a pipelined write, which paramiko does not report.
    assert raised.value.message.startswith("SFTP server refused to take the upload: it stored ")
    assert (raised.value.permanent, raised.value.needs_reconnect) == (False, False)
    assert files_under(home) == {}


# --- errors -------------------------------------------------------------------------------------------


def test_a_folder_the_user_may_not_write_is_a_clear_error_that_will_be_retried(sftp_server):
    username, home = sftp_server.add_user(Misbehaviour.READ_ONLY)
    image = make_staged_image(noisy_jpeg((160, 120)))

    with pytest.raises(DeliveryError) as raised:
        sftp_backend(sftp_server, username).deliver(image, rendered_path(image))

    assert raised.value.message == "SFTP server refused to make folders: Permission denied"
    assert (raised.value.needs_reconnect, raised.value.permanent) == (False, False)
    assert files_under(home) == {}


def test_an_unreachable_server_is_a_failure_that_will_be_retried():
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = FtpBackend(FtpConfig(protocol="sftp", host="127.0.0.1", port=free_port(), username="a", password="b"))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message.startswith("SFTP server unreachable:")
    assert raised.value.permanent is False


def test_a_server_that_does_not_speak_ssh_is_a_failure_that_will_be_retried(ftp_server):
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = FtpBackend(FtpConfig(protocol="sftp", host="127.0.0.1", port=ftp_server.port, username="a", password="b"))

    with pytest.raises(DeliveryError) as raised:
        backend.deliver(image, rendered_path(image))

    assert raised.value.message.startswith("SFTP server unreachable or connection lost:")
    assert raised.value.permanent is False


# --- size and time ------------------------------------------------------------------------------------


def test_a_20_mb_image_is_streamed_without_being_held_in_memory(sftp_server, tmp_path):
    size = 20 * 1024 * 1024
    source = tmp_path / "large.jpg"
    with source.open("wb") as file:
        for _ in range(20):
            file.write(b"\xa5" * (1024 * 1024))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    username, home = sftp_server.add_user()
    image = make_staged_image(b"", size_bytes=size, sha256=digest, opener=lambda: source.open("rb"))
    path = rendered_path(image)
    backend = sftp_backend(sftp_server, username)

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


def test_a_server_that_takes_an_upload_slowly_is_cut_at_the_attempt_deadline(sftp_server):
    # Each write is answered within a fraction of a second, so no per-operation timeout fires: only the attempt's
    # deadline, which shuts the registered socket, ends the upload.
    username, home = sftp_server.add_user(Misbehaviour.SLOW_UPLOAD)
    image = make_staged_image(bytes(16 * 1024 * 1024))
    path = rendered_path(image)
    backend = sftp_backend(sftp_server, username)

    started = time.monotonic()
    with Deadline(1.0) as deadline:
        backend.context = AttemptContext(deadline=deadline)
        with pytest.raises(DeliveryError) as raised:
            backend.deliver(image, path)
    elapsed = time.monotonic() - started

    assert sftp_server.slowed.is_set()
    assert deadline.expired
    assert elapsed < 5, (elapsed, raised.value.message)
    assert raised.value.permanent is False
    assert path not in files_under(home)


def test_a_server_that_never_sends_its_banner_is_cut_at_the_attempt_deadline():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    image = make_staged_image(noisy_jpeg((160, 120)))
    backend = FtpBackend(
        FtpConfig(protocol="sftp", host="127.0.0.1", port=listener.getsockname()[1], username="a", password="b")
    )

    started = time.monotonic()
    try:
        with Deadline(1.0) as deadline:
            backend.context = AttemptContext(deadline=deadline)
            with pytest.raises(DeliveryError) as raised:
                backend.deliver(image, rendered_path(image))
    finally:
        for connection in accepted:
            connection.close()
        listener.close()

    assert time.monotonic() - started < 5
    assert raised.value.message.startswith("SFTP server unreachable or connection lost:")
    assert raised.value.permanent is False


# --- kept connections (the delivery engine) -----------------------------------------------------------


@pytest.fixture
def engine_destination(sftp_server, owner):
    """A stored SFTP destination and how the delivery engine builds its backend for each attempt (a connection
    kept by this thread for the next attempt); what this thread kept is closed after the test."""
    username, home = sftp_server.add_user()
    destination = stored_destination(sftp_backend(sftp_server, username), owner.project)

    def backend(**kwargs) -> FtpBackend:
        return backend_for(Destination.objects.get(pk=destination.pk), keep_connections=True, **kwargs)

    yield destination, backend, username, home
    sftp._kept.close_all()


def _deliver(backend: FtpBackend, number: int, size: tuple[int, int] = (160, 120)):
    image = make_staged_image(noisy_jpeg(size), image_id=f"img_01JKEPT{number:019d}")
    path = rendered_path(image)
    backend.deliver(image, path)
    return path, image.open().read()


def test_deliveries_in_one_worker_thread_to_one_destination_share_one_connection(sftp_server, engine_destination):
    _, backend, username, home = engine_destination

    first = _deliver(backend(), 1)
    second = _deliver(backend(), 2)

    assert sftp_server.logins.count(username) == 1
    assert files_under(home) == dict([first, second])


def test_a_destination_test_keeps_no_connection(sftp_server, owner):
    username, _ = sftp_server.add_user()
    destination = stored_destination(sftp_backend(sftp_server, username), owner.project)

    results = [backend_for(Destination.objects.get(pk=destination.pk)).check() for _ in range(2)]

    assert [result.success for result in results] == [True, True]
    assert sftp_server.logins.count(username) == 2


def test_changed_credentials_make_a_new_connection(sftp_server, engine_destination):
    destination, backend, username, home = engine_destination
    _deliver(backend(), 1)
    # The user changes the password on their server (which keeps open sessions) and then in Apertur.
    sftp_server.users[username].password = "changed-password"
    Destination.objects.filter(pk=destination.pk).update(
        secrets={**Destination.objects.get(pk=destination.pk).secrets, "password": "changed-password"}
    )

    changed = _deliver(backend(), 2)
    again = _deliver(backend(), 3)

    assert sftp_server.logins.count(username) == 2
    assert changed[0] in files_under(home) and again[0] in files_under(home)


def test_a_kept_connection_the_server_closed_is_replaced_by_a_fresh_one(sftp_server, engine_destination):
    _, backend, username, home = engine_destination
    _deliver(backend(), 1)

    sftp_server.drop_connections()
    path, data = _deliver(backend(), 2)

    assert sftp_server.logins.count(username) == 2
    assert files_under(home)[path] == data


def test_a_connection_whose_attempt_failed_is_not_reused(sftp_server, engine_destination):
    _, backend, username, home = engine_destination
    _deliver(backend(), 1)
    sftp_server.users[username].misbehaviour = Misbehaviour.FAIL_UPLOAD
    with pytest.raises(DeliveryError, match="refused to take the upload"):
        _deliver(backend(), 2)
    logins_after_the_failure = sftp_server.logins.count(username)

    sftp_server.users[username].misbehaviour = Misbehaviour.NONE
    path, data = _deliver(backend(), 3)

    assert logins_after_the_failure == 1  # the failed attempt ran on the kept connection
    assert sftp_server.logins.count(username) == 2
    assert files_under(home)[path] == data


def test_the_attempt_deadline_cuts_a_slow_upload_on_a_kept_connection(sftp_server, engine_destination):
    _, backend, username, home = engine_destination
    _deliver(backend(), 1)
    sftp_server.users[username].misbehaviour = Misbehaviour.SLOW_UPLOAD
    image = make_staged_image(bytes(16 * 1024 * 1024), image_id="img_01JKEPTSLOW000000000000001")

    started = time.monotonic()
    with Deadline(1.0) as deadline, pytest.raises(DeliveryError) as raised:
        backend(deadline=deadline).deliver(image, rendered_path(image))
    elapsed = time.monotonic() - started

    assert sftp_server.logins.count(username) == 1  # cut on the kept connection, not on a new one
    assert deadline.expired
    assert elapsed < 5, (elapsed, raised.value.message)
    assert rendered_path(image) not in files_under(home)


def test_a_connection_idle_longer_than_the_keepalive_is_closed_not_reused(
    sftp_server, engine_destination, settings, monkeypatch
):
    _, backend, username, home = engine_destination
    settings.APERTUR_SFTP_KEEPALIVE_SECONDS = 30
    _deliver(backend(), 1)
    now = time.monotonic()
    monkeypatch.setattr(kept_connections, "monotonic", lambda: now + 31)

    path, data = _deliver(backend(), 2)

    assert sftp_server.logins.count(username) == 2
    assert files_under(home)[path] == data


def test_an_idle_kept_connection_is_closed_without_another_attempt(sftp_server, engine_destination, settings):
    _, backend, _, _ = engine_destination
    settings.APERTUR_SFTP_KEEPALIVE_SECONDS = 0.3
    _deliver(backend(), 1)
    [(_, kept)] = sftp._kept._mine().connections.values()
    assert kept.transport.is_active()

    # This thread makes no further SFTP attempt (its destination deleted, or only other work left): the reaper
    # closes the session anyway.
    assert wait_until(lambda: not kept.transport.is_active(), timeout=5)


def test_a_connection_past_its_age_limit_is_replaced(sftp_server, engine_destination, monkeypatch):
    _, backend, username, _ = engine_destination
    monkeypatch.setattr(sftp, "MAX_KEPT_CONNECTION_AGE_SECONDS", 0)

    _deliver(backend(), 1)
    _deliver(backend(), 2)

    assert sftp_server.logins.count(username) == 2


class SilencingProxy:
    """A TCP forwarder whose `silence()` stops passing bytes on the flows open so far, without a reset or a close:
    a firewall or NAT that forgot a connection. New connections get flows of their own."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silenced: list[threading.Event] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
                silenced = threading.Event()
                self.silenced.append(silenced)
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink, silenced), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, silenced: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not silenced.is_set():
                    sink.sendall(data)

    def silence(self) -> None:
        for flow in self.silenced:
            flow.set()

    def close(self) -> None:
        self.listener.close()


def test_a_kept_connection_that_went_silent_costs_a_moment_not_the_attempt(sftp_server, owner, settings):
    settings.APERTUR_SFTP_KEEPALIVE_SECONDS = 30
    username, home = sftp_server.add_user()
    proxy = SilencingProxy((sftp_server.host, sftp_server.port))
    destination = stored_destination(sftp_backend(sftp_server, username, port=proxy.port), owner.project)

    def deliver(number: int) -> tuple[str, bytes]:
        with Deadline(20) as deadline:
            backend = backend_for(Destination.objects.get(pk=destination.pk), keep_connections=True, deadline=deadline)
            return _deliver(backend, number)

    try:
        deliver(1)
        proxy.silence()
        started = time.monotonic()
        path, data = deliver(2)
        elapsed = time.monotonic() - started
    finally:
        sftp._kept.close_all()
        proxy.close()

    assert files_under(home)[path] == data
    assert sftp_server.logins.count(username) == 2  # the silent one given up, a fresh one dialled
    assert elapsed < sftp.LIVENESS_TIMEOUT_SECONDS + 5, elapsed


def test_a_keepalive_of_zero_makes_a_connection_per_attempt(sftp_server, engine_destination, settings):
    _, backend, username, _ = engine_destination
    settings.APERTUR_SFTP_KEEPALIVE_SECONDS = 0

    _deliver(backend(), 1)
    _deliver(backend(), 2)

    assert sftp_server.logins.count(username) == 2


# --- config -------------------------------------------------------------------------------------------


def test_the_default_port_follows_the_protocol():
    common = {"host": "files.example.com", "username": "u", "password": "p"}

    assert FtpConfig.model_validate({**common, "protocol": "sftp"}).port == 22
    assert FtpConfig.model_validate({**common, "protocol": "ftps"}).port == 21
    assert FtpConfig.model_validate({**common, "protocol": "sftp", "port": 2222}).port == 2222


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"protocol": "ftp", "privateKey": "ed25519"}, "privateKey", "only with protocol sftp"),
        ({"protocol": "ftps", "hostKeyFingerprint": OTHER_FINGERPRINT}, "hostKeyFingerprint", "only with protocol"),
        ({"privateKey": "ed25519_protected"}, "privateKey", "the key is protected by a passphrase"),
        ({"privateKey": "ed25519_protected", "passphrase": "wrong"}, "privateKey", "wrong passphrase"),
        ({"privateKey": "rsa_pem_protected", "passphrase": "wrong"}, "privateKey", "wrong passphrase"),
        ({"privateKey": "ed25519", "passphrase": PASSPHRASE}, "privateKey", "not protected by a passphrase"),
        ({"privateKey": "public ed25519"}, "privateKey", "not a private key in OpenSSH or PEM form"),
        ({"passphrase": PASSPHRASE}, "passphrase", "only with a privateKey"),
        ({"password": None}, "password", "required unless a privateKey is given"),
        ({"hostKeyFingerprint": "SHA256:too-short"}, "hostKeyFingerprint", "must be a SHA256 fingerprint"),
        ({"hostKeyFingerprint": "MD5:" + ":".join(["ab"] * 16)}, "hostKeyFingerprint", "must be a SHA256"),
        ({"protocol": "scp"}, "protocol", "Input should be 'ftp', 'ftps' or 'sftp'"),
    ],
)
def test_config_is_validated_strictly_and_never_quotes_the_key(client_keys, config, field, message):
    keys = {name: key.private_text for name, key in client_keys.items()}
    keys.update({f"public {name}": key.public_line for name, key in client_keys.items()})
    sent = {"protocol": "sftp", "host": "files.example.com", "username": "u", "password": "p", **config}
    if "privateKey" in config:
        sent["privateKey"] = keys[config["privateKey"]]
    sent = {name: value for name, value in sent.items() if value is not None}

    with pytest.raises(ValidationError, match=message) as raised:
        FtpConfig.model_validate(sent)

    assert [problem["loc"] for problem in raised.value.errors()] == [(field,)]
    assert "PRIVATE KEY" not in str(raised.value) and "AAAA" not in str(raised.value)


# --- the API ------------------------------------------------------------------------------------------


def test_the_api_creates_an_sftp_destination_with_its_secrets_masked_and_its_test_pins_the_host_key(
    api_client, owner, sftp_server, client_keys
):
    key = client_keys["ed25519_protected"]
    username, home = sftp_server.add_user(keys=[key])
    config = sftp_server.config(username, remotePath="incoming", privateKey=key.private_text, passphrase=key.passphrase)

    created = api_client.post(
        destinations_url(owner), {"type": "ftp", "name": "Studio SFTP", "config": config}, format="json", **owner.auth
    )
    assert created.status_code == 201, created.content
    destination = created.json()
    tested = api_client.post(destinations_url(owner, destination["id"], "test"), format="json", **owner.auth)
    [listed] = api_client.get(destinations_url(owner), **owner.auth).json()

    masked_key = "••••" + key.private_text[-4:]
    assert destination["config"] == {
        **config,
        "password": "••••",
        "privateKey": masked_key,
        "passphrase": "••••" + PASSPHRASE[-4:],
    }
    for response in (created, tested):
        assert_no_secret(response, PASSWORD, PASSPHRASE, key.private_text.splitlines()[1])
    assert tested.status_code == 200, tested.content
    assert tested.json()["success"] is True, tested.json()
    assert tested.json()["message"].startswith("Test image delivered to sftp://127.0.0.1/apertur-test/")
    [test_file] = files_under(home)
    assert test_file.startswith("apertur-test/") and test_file.endswith(".png")
    # Pinned by the test, and shown in clear (a fingerprint is no secret) beside the masked secrets.
    assert listed["config"]["hostKeyFingerprint"] == sftp_server.host_key_fingerprint
    assert listed["config"]["privateKey"] == masked_key


def test_a_pinned_host_key_is_kept_by_a_patch_and_can_be_replaced_or_unpinned_by_one(
    api_client, owner, own_sftp_server
):
    server = own_sftp_server
    username, _ = server.add_user()
    destination = api_client.post(
        destinations_url(owner),
        {"type": "ftp", "name": "SFTP", "config": server.config(username)},
        format="json",
        **owner.auth,
    ).json()
    destination_url = destinations_url(owner, destination["id"])
    test_url = destinations_url(owner, destination["id"], "test")

    def patch(config: dict) -> dict:
        return api_client.patch(destination_url, {"config": config}, format="json", **owner.auth).json()

    def listed() -> dict:
        [document] = api_client.get(destinations_url(owner), **owner.auth).json()
        return document

    def test() -> dict:
        return api_client.post(test_url, format="json", **owner.auth).json()

    first_key = server.host_key_fingerprint
    pinned = test()
    renamed = patch({"remotePath": "new"})
    server.change_host_key()
    second_key = server.host_key_fingerprint
    refused = test()
    flagged = listed()
    accepted = patch({"hostKeyFingerprint": second_key})
    retested = test()
    unpinned = patch({"hostKeyFingerprint": None})
    server.change_host_key()
    repinned = test()

    assert pinned["success"] is True, pinned
    assert renamed["config"]["hostKeyFingerprint"] == first_key
    assert refused["success"] is False
    assert refused["error"].startswith(
        f"the SFTP server's host key does not match: expected {first_key}, "
        f"the server presented {second_key} (ssh-ed25519)."
    )
    assert (flagged["lastError"], flagged["needsReconnect"]) == (refused["error"], False)
    assert accepted["config"]["hostKeyFingerprint"] == second_key
    assert retested["success"] is True, retested
    assert "hostKeyFingerprint" not in unpinned["config"]
    assert repinned["success"] is True, repinned
    assert listed()["config"]["hostKeyFingerprint"] == server.host_key_fingerprint


def test_the_api_refuses_a_bad_sftp_config_without_echoing_the_key(api_client, owner, sftp_server, client_keys):
    username, _ = sftp_server.add_user()
    protected = client_keys["ed25519_protected"]

    def create(**config):
        return api_client.post(
            destinations_url(owner),
            {"type": "ftp", "name": "SFTP", "config": sftp_server.config(username, **config)},
            format="json",
            **owner.auth,
        )

    wrong_passphrase = create(privateKey=protected.private_text, passphrase="not it")
    bad_fingerprint = create(hostKeyFingerprint="SHA256:nope")
    key_for_ftp = create(protocol="ftp", privateKey=client_keys["ed25519"].private_text)

    assert_validation_error(wrong_passphrase, {"config.privateKey": ["wrong passphrase (or a damaged key)"]})
    assert_validation_error(
        bad_fingerprint,
        {
            "config.hostKeyFingerprint": [
                "must be a SHA256 fingerprint as ssh-keygen -lf prints it: SHA256:<43 base64 characters>"
            ]
        },
    )
    assert_validation_error(key_for_ftp, {"config.privateKey": ["only with protocol sftp"]})
    for response in (wrong_passphrase, key_for_ftp):
        assert_no_secret(response, PASSWORD, "not it", protected.private_text.splitlines()[1])
        assert_no_secret(response, client_keys["ed25519"].private_text.splitlines()[1])


def _openssh_key_asking_for_rounds(rounds: int) -> str:
    """An Ed25519 key encrypted with 16 bcrypt rounds, its header then edited to ask for `rounds` (making one that
    really takes millions would cost the test what it guards against)."""
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = serialization.PrivateFormat.OpenSSH.encryption_builder().kdf_rounds(16).build(PASSPHRASE.encode())
    text = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption).decode()
    lines = text.strip().splitlines()
    blob = base64.b64decode("".join(lines[1:-1]))
    at = blob.index(b"bcrypt") + len(b"bcrypt") + 4  # then: the options' length, the salt's length and salt, rounds
    salt_length = struct.unpack(">I", blob[at : at + 4])[0]
    rounds_at = at + 4 + salt_length
    assert struct.unpack(">I", blob[rounds_at : rounds_at + 4])[0] == 16
    blob = blob[:rounds_at] + struct.pack(">I", rounds) + blob[rounds_at + 4 :]
    body = base64.b64encode(blob).decode()
    return "\n".join([lines[0], *(body[i : i + 70] for i in range(0, len(body), 70)), lines[-1]])


def test_a_key_asking_for_too_many_kdf_rounds_is_refused_before_deriving_anything(api_client, owner, sftp_server):
    username, _ = sftp_server.add_user()
    started = time.monotonic()
    response = api_client.post(
        destinations_url(owner),
        {
            "type": "ftp",
            "name": "SFTP",
            "config": sftp_server.config(
                username, privateKey=_openssh_key_asking_for_rounds(10_000_000), passphrase=PASSPHRASE
            ),
        },
        format="json",
        **owner.auth,
    )

    assert time.monotonic() - started < 2
    assert_validation_error(
        response,
        {
            "config.privateKey": [
                "the key's KDF rounds are too many (10000000, at most 128): "
                "re-encrypt it with `ssh-keygen -p -a 100 -f <key file>`"
            ]
        },
    )


def test_a_key_with_a_usual_round_count_still_loads():
    config = FtpConfig.model_validate(
        {
            "protocol": "sftp",
            "host": "files.example.com",
            "username": "u",
            "privateKey": _openssh_key_asking_for_rounds(16),
            "passphrase": PASSPHRASE,
        }
    )
    assert config.signing_key is not None


def _pkcs8_key_asking_for_iterations(iterations: int) -> str:
    """An Ed25519 key in encrypted PKCS#8 form (PBES2, PBKDF2), its iteration count then edited (making one that
    really takes 2^31 would cost the test what it guards against)."""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1_modules import rfc5208, rfc8018

    key = ed25519.Ed25519PrivateKey.generate()
    text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    ).decode()
    lines = text.strip().splitlines()
    info, _ = decoder.decode(base64.b64decode("".join(lines[1:-1])), asn1Spec=rfc5208.EncryptedPrivateKeyInfo())
    pbes2, _ = decoder.decode(info["encryptionAlgorithm"]["parameters"], asn1Spec=rfc8018.PBES2_params())
    pbkdf2, _ = decoder.decode(pbes2["keyDerivationFunc"]["parameters"], asn1Spec=rfc8018.PBKDF2_params())
    pbkdf2["iterationCount"] = iterations
    pbes2["keyDerivationFunc"]["parameters"] = encoder.encode(pbkdf2)
    info["encryptionAlgorithm"]["parameters"] = encoder.encode(pbes2)
    body = base64.b64encode(encoder.encode(info)).decode()
    return "\n".join([lines[0], *(body[i : i + 64] for i in range(0, len(body), 64)), lines[-1]])


def test_a_pkcs8_key_asking_for_too_many_iterations_is_refused_before_deriving_anything():
    started = time.monotonic()
    with pytest.raises(ValueError) as refused:
        load_private_key(_pkcs8_key_asking_for_iterations(2**31 - 1), PASSPHRASE)

    assert time.monotonic() - started < 2
    assert "PBKDF2 iterations are too many (2147483647, at most 1000000)" in str(refused.value)


def test_a_pkcs8_key_with_a_usual_iteration_count_still_loads():
    assert load_private_key(_pkcs8_key_asking_for_iterations(2048), PASSPHRASE).get_name() == "ssh-ed25519"
    with pytest.raises(ValueError, match="wrong passphrase"):
        load_private_key(_pkcs8_key_asking_for_iterations(2048), "not it")
