"""Encrypted uploads (docs/api.md "Encrypted uploads"): the server's RSA key pair and opening an RSA-OAEP +
AES-256-GCM envelope.

The client wraps a random AES-256 key with the server's public key (OAEP, SHA-256, MGF1 SHA-256, no label)
and encrypts the image with AES-256-GCM (12-byte IV, the 16-byte tag appended to the ciphertext).
"""

import base64
import binascii
from datetime import timedelta
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apertur.errors import AppError
from sessions_app.models import UploadEncryptionKey

ALGORITHM = "RSA-OAEP+AES-256-GCM"
ENVELOPE_FIELDS = ("encryptedKey", "iv", "encryptedData")
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def invalid_envelope(reason: str) -> AppError:
    return AppError(400, "INVALID_ENCRYPTED_PAYLOAD", f"The encrypted upload cannot be opened: {reason}.")


def envelope_limit_bytes(plain_limit_bytes: int) -> int:
    """The largest envelope worth reading for an image limit: base64 grows data by 4/3, plus the JSON around it."""
    return plain_limit_bytes * 4 // 3 + 64 * 1024


def encryption_key_current() -> UploadEncryptionKey | None:
    """The current key pair, or None while none was made yet. Reads only: GET endpoints call it."""
    return UploadEncryptionKey.objects.filter(is_current=True).first()


def encryption_key_ensure() -> UploadEncryptionKey:
    """The current key pair, made if there is none (concurrent first calls agree on one).

    Called on write paths that come before anyone needs the key: session creation, and the start of the server
    (`apertur_run`) and of every worker. Reads never make it, so a GET never writes.
    """
    key = encryption_key_current()
    if key is not None:
        return key
    try:
        with transaction.atomic():
            return _create_key()
    except IntegrityError:  # another process created it first
        return UploadEncryptionKey.objects.get(is_current=True)


def encryption_key_rotate() -> UploadEncryptionKey:
    """Retire the current key (it keeps decrypting for APERTUR_ENCRYPTION_KEY_GRACE_HOURS) and make a new one."""
    with transaction.atomic():
        UploadEncryptionKey.objects.filter(is_current=True).update(is_current=False, retired_at=timezone.now())
        return _create_key()


def _create_key() -> UploadEncryptionKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=settings.APERTUR_ENCRYPTION_KEY_BITS)
    return UploadEncryptionKey.objects.create(
        public_key_pem=private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        private_key_pem=private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


@lru_cache(maxsize=8)
def _private_key(key_id: int, pem: str) -> rsa.RSAPrivateKey:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _usable_keys() -> list[UploadEncryptionKey]:
    grace_start = timezone.now() - timedelta(hours=settings.APERTUR_ENCRYPTION_KEY_GRACE_HOURS)
    return list(
        UploadEncryptionKey.objects.filter(Q(is_current=True) | Q(retired_at__gte=grace_start)).order_by(
            "-is_current", "-created_at"
        )
    )


def _decoded(envelope: dict, field: str) -> bytes:
    value = envelope.get(field)
    if not isinstance(value, str):
        raise invalid_envelope(f"{field} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise invalid_envelope(f"{field} is not base64") from error


def decrypt_envelope(envelope: object) -> bytes:
    """The image bytes inside an envelope, or 400 INVALID_ENCRYPTED_PAYLOAD."""
    if not isinstance(envelope, dict):
        raise invalid_envelope("the envelope is not a JSON object")
    if envelope.get("algorithm", ALGORITHM) != ALGORITHM:
        raise invalid_envelope(f"the algorithm must be {ALGORITHM}")
    wrapped_key, iv, ciphertext = (_decoded(envelope, field) for field in ENVELOPE_FIELDS)
    if len(iv) != 12:
        raise invalid_envelope("iv must be 12 bytes")
    for key in _usable_keys():
        try:
            aes_key = _private_key(key.pk, key.private_key_pem).decrypt(wrapped_key, _OAEP)
        except ValueError:
            continue  # wrapped for another (or no) key of ours
        if len(aes_key) != 32:
            raise invalid_envelope("the wrapped key is not an AES-256 key")
        try:
            return AESGCM(aes_key).decrypt(iv, ciphertext, None)
        except InvalidTag as error:
            raise invalid_envelope("the data does not match its authentication tag") from error
    raise invalid_envelope("the key was not wrapped with a current server key")
