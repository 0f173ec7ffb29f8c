"""First start: an empty catalogue gets the packaged CHS-DRG 1.1 group list; with no pool at all,
the demo pool and its scheme are loaded."""
from __future__ import annotations

from sqlalchemy import select

from core.catalog import SAMPLE_CATALOG
from core.config import SCHEMES_DIR
from core.db import Database
from core.models import Pool

DEMO_SCHEME = SCHEMES_DIR / "demo.yaml"


def ensure_catalog(db: Database) -> int:
    """The packaged CHS-DRG 1.1 group list into an empty catalogue; the number of groups added."""
    from core.catalog import ensure_catalog as ensure

    with db.session() as s:
        return ensure(s)


def ensure_demo(db: Database) -> bool:
    """Load the demo scheme (and the DRG groups it needs) into an empty database."""
    with db.session() as s:
        if s.scalar(select(Pool.id).limit(1)) is not None:
            return False
    from core.catalog import ensure_catalog as ensure
    from core.catalog import import_catalog
    from core.scheme import load_scheme, store_scheme

    with db.session() as s:
        ensure(s)
        import_catalog(s, SAMPLE_CATALOG)  # its groups, should a county's own list lack them
        store_scheme(s, load_scheme(DEMO_SCHEME))
    return True
