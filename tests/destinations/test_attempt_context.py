"""The attempt context's secret write-back (`save_secrets`), on a stored destination and in memory."""

from destinations.attempts import backend_for
from destinations.backends.base import AttemptContext, MemorySecretsStore
from destinations.models import Destination
from destinations.services import destination_create


def test_save_secrets_merges_into_the_stored_secrets_and_keeps_the_others(owner):
    destination = destination_create(
        project=owner.project,
        type="webhook",
        name="hook",
        config={"url": "https://hooks.example.test/in", "secret": "first-secret"},
    )
    context = backend_for(destination).context

    after = context.save_secrets({"pinned": {"fingerprint": "SHA256:abc"}})

    assert after == {"secret": "first-secret", "pinned": {"fingerprint": "SHA256:abc"}}
    assert Destination.objects.get(pk=destination.pk).secrets == after


def test_save_secrets_in_memory_merges_nested_values():
    context = AttemptContext(secrets=MemorySecretsStore({"token": {"access_token": "a", "refresh_token": "r"}}))

    after = context.save_secrets({"token": {"access_token": "b"}})

    assert after == {"token": {"access_token": "b", "refresh_token": "r"}}
    assert context.secrets.secrets == after
