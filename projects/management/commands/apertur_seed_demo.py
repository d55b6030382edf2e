import json

from django.conf import settings
from django.core.management.base import BaseCommand

from projects.services import bootstrap

DEMO_EMAIL = "demo@apertur.local"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (a documented development account, created only by `make run`)


class Command(BaseCommand):
    help = "Create the demo account, project and API key once (development only) and print how to use them."

    def handle(self, *args, **options) -> None:
        # Keys are stored hashed; the demo key is kept in var/ so every `make run` can print it again.
        credentials_file = settings.VAR_DIR / "demo-credentials.json"
        if credentials_file.exists():
            credentials = json.loads(credentials_file.read_text())
        else:
            project, api_key = bootstrap(
                email=DEMO_EMAIL, password=DEMO_PASSWORD, project_name="Demo project", site_admin=True
            )
            credentials = {
                "email": DEMO_EMAIL,
                "password": DEMO_PASSWORD,
                "project_id": str(project.pk),
                "api_key": api_key,
            }
            credentials_file.write_text(json.dumps(credentials, indent=2))
            credentials_file.chmod(0o600)
        self.stdout.write(
            "\nDemo account (development only)\n"
            f"  Admin:       {settings.APERTUR_PUBLIC_URL}/admin/\n"
            f"  Login:       {credentials['email']} / {credentials['password']}\n"
            f"  Project id:  {credentials['project_id']}\n"
            f"  API key:     {credentials['api_key']}\n"
        )
