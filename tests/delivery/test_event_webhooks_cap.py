"""The cap on a project's event webhooks under real concurrency (docs/api.md "Event webhooks": creating one more
than APERTUR_EVENT_WEBHOOKS_PER_PROJECT is 409 `WEBHOOK_LIMIT_REACHED`).

The creates go to a real server process from many client threads at once, so the count is decided by the
database's locks, not by the test client's serial requests.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.conf import settings

from delivery.models import EventWebhook
from tests.factories import make_persona

CREATORS = 30


def test_thirty_concurrent_creates_leave_exactly_the_cap(live_server_process):
    persona = make_persona("owner")
    cap = settings.APERTUR_EVENT_WEBHOOKS_PER_PROJECT
    start = threading.Barrier(CREATORS)

    def one_create(number: int) -> httpx.Response:
        start.wait()
        return httpx.post(
            f"{live_server_process.url}/api/v1/projects/{persona.project.pk}/webhooks",
            json={"url": f"https://hooks.example.test/{number}", "topics": ["*"]},
            headers={"Authorization": f"Bearer {persona.plain_key}"},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=CREATORS) as pool:
        responses = list(pool.map(one_create, range(CREATORS)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * cap + [409] * (CREATORS - cap), statuses
    refused = {response.json()["code"] for response in responses if response.status_code == 409}
    assert refused == {"WEBHOOK_LIMIT_REACHED"}
    assert EventWebhook.objects.filter(project=persona.project).count() == cap
