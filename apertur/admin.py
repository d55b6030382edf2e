"""The admin signs in through the accounts' sign-in (django-allauth; docs/configuration.md "Accounts"): the same
limits on guessing (counted before each password check, so guesses sent all at once cannot each be checked), and
the two-factor step of accounts that turned it on — the admin's own form would skip both. A signed-in user who is
not staff is refused."""

from allauth.account.decorators import secure_admin_login
from django.contrib import admin

admin.site.login = secure_admin_login(admin.site.login)
