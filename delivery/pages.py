"""A project's event webhooks in the dashboard (docs/api.md "Event webhooks"): the list with each webhook's last
delivery, create (the secret shown once), edit, switch on and off, delete, Test, and a webhook's deliveries with
their request and response, and Retry. Thin: input is checked by the API's own serializers
(delivery/event_webhooks_api.py) and every write goes through delivery/event_webhooks.py, so the pages and the API
say the same things. Members read everything here; owners and admins change it."""

import json
import math
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from apertur.errors import AppError
from apertur.pages import refusal_page, show_once, take_shown_once
from delivery import event_webhooks as services
from delivery import event_webhooks_selectors as selectors
from delivery import page_selectors
from delivery.event_webhooks import DEFAULT_DISABLE_AFTER_FAILURES, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_INTERVALS
from delivery.event_webhooks_api import EventDeliveryListView, EventWebhookDetailView, EventWebhookListView
from delivery.models import EventDelivery, EventWebhook
from delivery.project_events import TOPICS, WILDCARDS
from projects.models import Membership
from projects.selectors import membership_for

DELIVERIES_PER_PAGE = 20
TEST_TAG = "webhook-test"  # a Test result's message carries it and the webhook's id, to be shown in its row


def _managing(request: HttpRequest, project_id: str) -> Membership:
    membership = membership_for(user=request.user, project_id=project_id)
    if membership.role not in Membership.MANAGING_ROLES:
        raise AppError(403, "FORBIDDEN", "Only the project's owners and admins can change its event webhooks.")
    return membership


def _messages(found: Any) -> list[str]:
    """DRF's errors of one field as sentences: a list's by item (`{1: [...]}` → "line 2: …"), a header map's by
    header name."""
    if isinstance(found, dict):
        return [
            f"{f'line {index + 1}' if isinstance(index, int) else index}: {message}"
            for index, items in found.items()
            for message in _messages(items)
        ]
    if isinstance(found, list):
        return [message for item in found for message in _messages(item)]
    return [str(found)]


def _headers(text: str) -> tuple[dict[str, str], list[str]]:
    """`Name: value` lines as the API's `customHeaders` map; the lines that are not that, said."""
    headers: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            problems.append(f"line {number}: write a header as Name: value")
        elif name.strip() in headers:
            problems.append(f"{name.strip()} is given twice (header names ignore case)")
        else:
            headers[name.strip()] = value.strip()
    return headers, problems


def _webhook_input(form: Any, *, editing: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The form as the API's JSON body (docs/api.md "Event webhooks"). An empty number or list keeps the default
    (or, when editing, the current value)."""
    body: dict[str, Any] = {
        "url": form.get("url", ""),
        "topics": form.getlist("topics"),
        "signatureMethod": form.get("signatureMethod", EventWebhook.SignatureMethod.HMAC_SHA256),
    }
    for name in ("maxRetries", "disableAfterFailures"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    intervals = form.get("retryIntervals", "").replace(",", " ").split()
    if intervals:
        body["retryIntervals"] = intervals
    headers, problems = _headers(form.get("customHeaders", ""))
    if headers or editing:
        body["customHeaders"] = headers
    return body, ({"customHeaders": problems} if problems else {})


def _checked(form: Any, serializer_class: type, *, editing: bool) -> tuple[Any, dict[str, list[str]]]:
    body, errors = _webhook_input(form, editing=editing)
    payload = serializer_class(data=body)
    if not payload.is_valid():
        errors = {**{name: _messages(found) for name, found in payload.errors.items()}, **errors}
    return payload, errors


def _form_of(webhook: EventWebhook) -> dict[str, str]:
    """A webhook's settings as the form shows them."""
    return {
        "url": webhook.url,
        "signatureMethod": webhook.signature_method,
        "maxRetries": str(webhook.max_retries),
        "retryIntervals": ", ".join(str(seconds) for seconds in webhook.retry_intervals),
        "disableAfterFailures": str(webhook.disable_after_failures),
        "customHeaders": "\n".join(f"{name}: {value}" for name, value in webhook.custom_headers.items()),
    }


def _form_context(form: Any, chosen_topics: list[str]) -> dict[str, Any]:
    return {
        "form": form,
        "chosen_topics": chosen_topics,
        "topics": TOPICS,
        "wildcards": WILDCARDS,
        "signature_methods": EventWebhook.SignatureMethod.values,
        "defaults": {
            "maxRetries": DEFAULT_MAX_RETRIES,
            "retryIntervals": ", ".join(map(str, DEFAULT_RETRY_INTERVALS)),
            "disableAfterFailures": DEFAULT_DISABLE_AFTER_FAILURES,
        },
    }


def _list_page(request: HttpRequest, membership: Membership, *, status: int = 200, **extra: Any) -> HttpResponse:
    project = membership.project
    # Test results are shown in their webhook's row; the other messages where every page shows them.
    tested, other = {}, []
    for message in messages.get_messages(request):
        tags = (message.extra_tags or "").split()
        if tags[:1] == [TEST_TAG]:
            tested[tags[1]] = {"text": message.message, "ok": message.level == messages.SUCCESS}
        else:
            other.append(message)
    webhooks = page_selectors.event_webhooks_with_last_delivery(project=project)
    for webhook in webhooks:
        webhook.tested = tested.get(str(webhook.pk))
    refused_form = extra.pop("refused_form", None)
    return render(
        request,
        "delivery/webhooks.html",
        {
            "project": project,
            "webhooks": webhooks,
            "can_manage": membership.role in Membership.MANAGING_ROLES,
            "page_messages": other,
            "errors": {},
            **_form_context(refused_form or {}, refused_form.getlist("topics") if refused_form else []),
            **extra,
        },
        status=status,
    )


@never_cache  # a page that may show a webhook's secret, once, must not be kept by the browser or a proxy
@require_http_methods(["GET", "POST"])
@login_required
def webhook_list(request: HttpRequest, project_id: str) -> HttpResponse:
    """GET: the project's webhooks (and, once, the secret a POST just made). POST: a new webhook."""
    try:
        if request.method == "GET":
            membership = membership_for(user=request.user, project_id=project_id)
            return _list_page(request, membership, **_shown_once(request, membership))
        membership = _managing(request, project_id)
        payload, errors = _checked(request.POST, EventWebhookListView.Input, editing=False)
        if errors:
            return _list_page(request, membership, status=400, refused_form=request.POST, errors=errors)
        webhook, secret = services.event_webhook_create(project=membership.project, **payload.service_arguments())
    except AppError as error:
        if error.status in (400, 409):  # 409: the project has as many webhooks as allowed
            errors = error.fields or {"form": [error.message]}
            return _list_page(request, membership, status=error.status, refused_form=request.POST, errors=errors)
        return refusal_page(request, error)
    return _show_once(request, membership, webhook=webhook, secret=secret)


def _show_once(request: HttpRequest, membership: Membership, *, webhook: EventWebhook, secret: str) -> HttpResponse:
    url = reverse("delivery-pages:webhooks", args=[membership.project.pk])
    project_id = str(membership.project.pk)
    return show_once(request, url, kind="webhook", project_id=project_id, webhook_id=str(webhook.pk), secret=secret)


def _shown_once(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    entry = take_shown_once(request, kinds=("webhook",), project_id=str(membership.project.pk))
    if entry is None:
        return {}
    webhook = EventWebhook.objects.filter(pk=entry["webhook_id"], project=membership.project).first()
    return {} if webhook is None else {"created": webhook, "secret": entry["secret"]}


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def webhook_edit(request: HttpRequest, project_id: str, webhook_id: str) -> HttpResponse:
    try:
        membership = _managing(request, project_id)
        webhook = selectors.event_webhook_for_project(project=membership.project, webhook_id=webhook_id)
        if request.method == "GET":
            return _edit_page(request, membership, webhook, form=_form_of(webhook), chosen_topics=webhook.topics)
        payload, errors = _checked(request.POST, EventWebhookDetailView.Input, editing=True)
        if errors:
            chosen = request.POST.getlist("topics")
            return _edit_page(
                request, membership, webhook, form=request.POST, chosen_topics=chosen, errors=errors, status=400
            )
        services.event_webhook_update(webhook=webhook, changes=payload.service_arguments())
    except AppError as error:
        return refusal_page(request, error)
    messages.success(request, f"The webhook to {webhook.url} is saved.")
    return redirect("delivery-pages:webhooks", project_id=membership.project.pk)


def _edit_page(
    request: HttpRequest,
    membership: Membership,
    webhook: EventWebhook,
    *,
    form: Any,
    chosen_topics: list[str],
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {"project": membership.project, "webhook": webhook, "errors": errors or {}}
    return render(
        request, "delivery/webhook_edit.html", {**context, **_form_context(form, chosen_topics)}, status=status
    )


@require_POST
@login_required
def webhook_active(request: HttpRequest, project_id: str, webhook_id: str) -> HttpResponse:
    """Switch a webhook on (which clears its failure count) or off, with `isActive` `true` or `false`."""
    try:
        membership = _managing(request, project_id)
        webhook = selectors.event_webhook_for_project(project=membership.project, webhook_id=webhook_id)
        said = request.POST.get("isActive")
        if said not in ("true", "false"):
            raise AppError(400, "VALIDATION_ERROR", "isActive must be true or false.")
        services.event_webhook_update(webhook=webhook, changes={"is_active": said == "true"})
    except AppError as error:
        return refusal_page(request, error)
    state = "on: it gets events again" if said == "true" else "off: it gets no events"
    messages.success(request, f"The webhook to {webhook.url} is switched {state}.")
    return redirect("delivery-pages:webhooks", project_id=membership.project.pk)


@require_POST
@login_required
def webhook_delete(request: HttpRequest, project_id: str, webhook_id: str) -> HttpResponse:
    try:
        membership = _managing(request, project_id)
        webhook = selectors.event_webhook_for_project(project=membership.project, webhook_id=webhook_id)
        services.event_webhook_delete(webhook=webhook)
    except AppError as error:
        return refusal_page(request, error)
    messages.success(request, f"The webhook to {webhook.url} is deleted, with its deliveries.")
    return redirect("delivery-pages:webhooks", project_id=membership.project.pk)


@require_POST
@login_required
def webhook_test(request: HttpRequest, project_id: str, webhook_id: str) -> HttpResponse:
    """Send one signed test event now; its outcome is shown in the webhook's row."""
    try:
        membership = _managing(request, project_id)
        webhook = selectors.event_webhook_for_project(project=membership.project, webhook_id=webhook_id)
        said = services.event_webhook_test(webhook=webhook)
    except AppError as error:
        return refusal_page(request, error)
    # The service's message is "Test event delivered: …" or "Test event not delivered: …" (docs/api.md).
    level = messages.SUCCESS if said.startswith("Test event delivered") else messages.ERROR
    messages.add_message(request, level, said, extra_tags=f"{TEST_TAG} {webhook.pk}")
    url = reverse("delivery-pages:webhooks", args=[membership.project.pk])
    return redirect(f"{url}#webhook-{webhook.pk}")


UNKEPT_TIME = "(the attempt's time; not kept)"
UNKEPT_SIGNATURE = "(made with the webhook's secret at each attempt; not shown)"


def _signature_headers(webhook: EventWebhook, delivery: EventDelivery) -> list[tuple[str, str]]:
    """The signature headers as the deliveries page shows them: what is known, and what is not kept."""
    if webhook.signature_method == EventWebhook.SignatureMethod.SVIX:
        return [("svix-id", str(delivery.pk)), ("svix-timestamp", UNKEPT_TIME), ("svix-signature", UNKEPT_SIGNATURE)]
    return [("X-Apertur-Timestamp", UNKEPT_TIME), ("X-Apertur-Signature", UNKEPT_SIGNATURE)]


def _request_of(webhook: EventWebhook, delivery: EventDelivery) -> dict[str, Any]:
    """What the latest attempt sent (delivery/event_webhooks.py `_post`): the body is the same bytes on every
    attempt; the signature and its time are not kept (the secret never shows)."""
    event = delivery.event
    body = services.event_body(
        topic=event.topic, project_id=event.project_id, data=event.data, timestamp=event.created_at
    )
    headers = [
        *webhook.custom_headers.items(),
        ("Content-Type", "application/json"),
        ("X-Apertur-Event", event.topic),
        ("X-Apertur-Delivery-Id", str(delivery.pk)),
        ("X-Apertur-Event-Id", str(event.pk)),
        ("X-Apertur-Attempt", str(delivery.attempts) if delivery.attempts else "—"),
        *_signature_headers(webhook, delivery),
    ]
    return {
        "headers": headers,
        "body": json.dumps(json.loads(body), indent=2, ensure_ascii=False),
    }


@require_safe
@login_required
def webhook_deliveries(request: HttpRequest, project_id: str, webhook_id: str) -> HttpResponse:
    """A webhook's deliveries, newest first, DELIVERIES_PER_PAGE a page (`?page=`, as the API's `page`)."""
    try:
        membership = membership_for(user=request.user, project_id=project_id)
        webhook = selectors.event_webhook_for_project(project=membership.project, webhook_id=webhook_id)
        params = EventDeliveryListView.Input(data={"page": request.GET.get("page", "1")})
        if not params.is_valid():
            raise AppError(400, "VALIDATION_ERROR", f"page: {' '.join(_messages(params.errors['page']))}")
        page = params.validated_data["page"]
        deliveries, total = selectors.event_deliveries_page(
            webhook=webhook, offset=(page - 1) * DELIVERIES_PER_PAGE, limit=DELIVERIES_PER_PAGE
        )
    except AppError as error:
        return refusal_page(request, error)
    for delivery in deliveries:
        delivery.request = _request_of(webhook, delivery)
        delivery.waiting = delivery.status == EventDelivery.Status.RETRYING and delivery.lease_expires_at is None
    pages = max(1, math.ceil(total / DELIVERIES_PER_PAGE))
    return render(
        request,
        "delivery/deliveries.html",
        {
            "project": membership.project,
            "webhook": webhook,
            "deliveries": deliveries,
            "total": total,
            "page": page,
            "pages": pages,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < pages else None,
            "can_manage": membership.role in Membership.MANAGING_ROLES,
        },
    )


@require_POST
@login_required
def delivery_retry(request: HttpRequest, project_id: str, webhook_id: str, delivery_id: str) -> HttpResponse:
    """A failed delivery again, with a fresh attempt budget. Retrying a webhook's delivery is managing the
    webhook: owners and admins only."""
    try:
        membership = _managing(request, project_id)
        webhook = selectors.event_webhook_for_project(project=membership.project, webhook_id=webhook_id)
        delivery = selectors.event_delivery_for_webhook(webhook=webhook, delivery_id=delivery_id)
        services.event_delivery_retry(delivery=delivery)
    except AppError as error:
        if error.status == 409:  # not failed, or the webhook is off: said on the page it came from
            messages.error(request, error.message)
            return redirect("delivery-pages:webhook-deliveries", project_id=project_id, webhook_id=webhook_id)
        return refusal_page(request, error)
    messages.success(request, "The delivery is queued for another attempt.")
    return redirect("delivery-pages:webhook-deliveries", project_id=membership.project.pk, webhook_id=webhook.pk)
