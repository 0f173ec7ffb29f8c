"""Households: look-ups shared by every dialogue. (The sign-up service extends this module.)"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Household, HouseholdLink, LinkRole


def household_for_user(session: Session, openid: str) -> Household | None:
    """The household this WeChat user acts for: as its head first, else as a proxy (the newest
    link when a relative helps several households)."""
    links = list(session.scalars(select(HouseholdLink).where(HouseholdLink.openid == openid)
                                 .order_by(HouseholdLink.id.desc())))
    for link in links:
        if link.role is LinkRole.head:
            return link.household
    return links[0].household if links else None
