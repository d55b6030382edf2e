"""The encryption key pair is made when the server and the workers start (a GET that shows it never makes it), so
a client can fetch the public key before any session exists."""

import httpx
import pytest

from sessions_app.models import UploadEncryptionKey
from tests.conftest import ServerProcess
from tests.delivery.test_durability import BROKER_URL
from tests.factories import make_persona


def test_a_booting_worker_makes_the_key_pair(worker):
    assert UploadEncryptionKey.objects.filter(is_current=True).exists()


@pytest.mark.skipif(BROKER_URL is None, reason="--no-worker needs a broker: DRAMATIQ_BROKER_URL or a local Redis")
def test_the_web_server_alone_makes_it_and_hands_out_the_public_key_before_any_session(transactional_db, tmp_path):
    persona = make_persona("owner")
    server = ServerProcess(with_worker=False, log_path=tmp_path / "web.log", DRAMATIQ_BROKER_URL=BROKER_URL)
    try:
        response = httpx.get(
            f"{server.url}/api/v1/encryption/server-key", headers={"Authorization": f"Bearer {persona.plain_key}"}
        )
    finally:
        server.stop()

    assert response.status_code == 200, response.text
    assert response.json() == {"publicKey": UploadEncryptionKey.objects.get(is_current=True).public_key_pem}
