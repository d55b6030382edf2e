import json

from django.core.management.base import BaseCommand, CommandError

from apertur.errors import AppError
from projects.services import bootstrap


class Command(BaseCommand):
    help = "Create (or reuse) a user and project, create a new live API key, and print them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--json", action="store_true", help="print one JSON line (for scripts)")

    def handle(self, *args, email: str, password: str, project: str, json: bool, **options) -> None:
        try:
            created_project, plain_key = bootstrap(email=email, password=password, project_name=project)
        except AppError as error:
            raise CommandError(error.message) from error
        result = {"user_email": email, "project_id": str(created_project.pk), "api_key": plain_key}
        if json:
            self.stdout.write(_json_line(result))
        else:
            self.stdout.write(f"User:     {email}\nProject:  {created_project.pk}\nAPI key:  {plain_key}")


def _json_line(result: dict) -> str:
    return json.dumps(result, separators=(", ", ": "))
