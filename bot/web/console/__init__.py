"""The administrators' web console at /admin/ (SPEC "HTTP endpoints"): server-rendered pages
for the claims queue and review, households, payments, payouts and the bank file, the fund's
reports, the disclosure before it goes, the audit log and the administrators.

Sign-in is a one-time link from `/后台` (core/console.py); the cookie names a session stored
hashed. Pages are scoped like the chat commands (outside the scope: 404); every form carries
the session's CSRF token (without it, or with a wrong one: 400, nothing changed); every change
runs the chat command's own code (`common.run_command` → handlers/admin.py `dispatch`); an
auditor's POST is refused and audited. Words are in templates/console/.

Modules: `common` (request life, rendering, run_command), `auth` (sign-in, sign-out, the
stylesheet), `claims`, `payouts`, `households`, `money` (payments, fund), `oversight`
(disclosure, audit log, administrators).
"""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/admin")

from bot.web.console import (auth, claims, households, money, oversight,  # noqa: E402,F401
                             payouts)
