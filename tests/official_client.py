"""The official Python client `apertur-sdk` 0.2.0, unchanged, importable as `apertur_sdk`.

Its top-level package is named `apertur`, like this project's Django package, so `make install-test` puts it in
.venv/official-client (outside sys.path) and this module loads it under another name. The client uses relative
imports only, so it runs as published.
"""

import importlib.util
import os
import sys
from pathlib import Path

NAME = "apertur_sdk"
LOCATION = Path(os.environ.get("APERTUR_OFFICIAL_CLIENT_DIR", Path(sys.prefix) / "official-client")) / "apertur"


def load() -> None:
    if NAME in sys.modules:
        return
    if not (LOCATION / "__init__.py").exists():
        raise ImportError(f"the official client is not installed in {LOCATION.parent}; run `make install-test`")
    spec = importlib.util.spec_from_file_location(
        NAME, LOCATION / "__init__.py", submodule_search_locations=[str(LOCATION)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
