"""The production environment given in docs/DEPLOY.md passes Django's deployment checks, read
from the document itself so the two cannot drift apart."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
SECTION = "## HTTPS, proxies and the production environment"


def production_environment() -> dict[str, str]:
    """The `sh` block of DEPLOY.md's production section, with a fresh secret wherever the
    document says `generate-your-own` (a secret printed in a document is no secret)."""
    text = (BASE_DIR / "docs" / "DEPLOY.md").read_text()
    section = text[text.index(SECTION) :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "DEPLOY.md's production section has no environment block"
    environment = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        environment[name] = value.replace("generate-your-own", secrets.token_urlsafe(50))
    return environment


def check_deploy(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`manage.py check --deploy` in a process that gets exactly these variables."""
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_documented_production_environment_passes_the_deployment_checks() -> None:
    environment = production_environment()
    assert environment["SECURE_SSL_REDIRECT"] == "true"
    assert "DEBUG" not in environment
    result = check_deploy(environment)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_cookies_are_secure_by_default_once_served_beyond_this_machine() -> None:
    """Without SECURE_SSL_REDIRECT (a load balancer may redirect instead), the public
    ALLOWED_HOSTS alone makes the session and CSRF cookies https-only: Django then warns
    about the missing redirect only, not about the cookies."""
    environment = production_environment()
    del environment["SECURE_SSL_REDIRECT"]
    result = check_deploy(environment)
    assert result.returncode == 1
    assert "security.W008" in result.stderr  # SECURE_SSL_REDIRECT
    assert "security.W012" not in result.stderr  # SESSION_COOKIE_SECURE
    assert "security.W016" not in result.stderr  # CSRF_COOKIE_SECURE
