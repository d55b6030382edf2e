"""A minimal OAuth destination on the OAuthBackend base, for the local provider in tests/servers/oauth_provider.py.

It exists to prove the base (refresh ahead of expiry, rotation saved under the lock, reconnect on a refused
grant) with real HTTP, independently of any one provider's client library.
"""

from urllib.parse import quote

import requests

from apertur.http import provider_session
from destinations.backends.base import DeliveryError, DeliveryReceipt, StagedImage
from destinations.backends.oauth import AccessTokenRejected, OAuthBackend, OAuthConfig, OAuthEndpoints
from destinations.paths import normalise_path

TYPE = "dummy_drive"


class DummyDriveConfig(OAuthConfig):
    folderPath: str = "Apertur"


class DummyDriveBackend(OAuthBackend):
    type = TYPE
    provider = TYPE
    Config = DummyDriveConfig
    config: DummyDriveConfig
    endpoints = OAuthEndpoints(
        authorize_url="https://drive.invalid/authorize",
        token_url="https://drive.invalid/token",
        api_base="https://drive.invalid",
        revoke_url="https://drive.invalid/revoke",
    )
    scopes = ("files.write",)
    # What the connect flow adds to the authorise URL, as the real providers' backends do (Google's asks for a
    # refresh token this way).
    authorize_params = {"access_type": "offline"}
    supports_pkce = True

    def remote_path(self, image: StagedImage) -> str:
        return normalise_path(f"{self.config.folderPath}/{super().remote_path(image)}")

    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        url = f"{self.endpoint('api_base')}/files/{quote(path)}"

        def upload(access_token: str) -> requests.Response:
            with image.open() as stream, provider_session() as session:
                response = session.put(
                    url,
                    data=stream,
                    headers={"Authorization": f"Bearer {access_token}", "Content-Length": str(image.size_bytes)},
                    timeout=self.context.deadline.timeout(30),
                )
            if response.status_code == 401:
                raise AccessTokenRejected()
            return response

        try:
            response = self.with_access_token(upload)
        except requests.RequestException as error:
            raise DeliveryError(f"could not reach the drive: {type(error).__name__}") from error
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code} from the drive", http_status=response.status_code)
        return DeliveryReceipt(remote_reference=f"{TYPE}:{path}", http_status=response.status_code)
